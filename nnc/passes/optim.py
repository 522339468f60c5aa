"""Optimizers as graph nodes: one training step is forward + backward + update, compiled together.

The `optimizer` pass (`optimizer_update(spec)`), run after `grad` in the
training-step pipeline (nnc.passes.pipeline.training_step), appends for every
trainable parameter the nodes of the optimizer's update; `graph.updates`
maps each parameter and each optimizer state (`optimizer/<param>/m`, ...) to
its new value. The learning rate is an input (`optimizer/lr`) so schedules
never recompile; the step count `optimizer/step` is state. The formulas follow
PyTorch's (SGD with momentum / Nesterov, RMSProp, Adagrad, Adadelta, Adam and
AdamW with bias correction), so results can be compared one to one.
"""

from __future__ import annotations

from ..errors import NncError
from ..ir import ops
from ..ir.graph import Emitter
from ..ir.initializer import Init
from ..ir.types import TensorType
from ..specs import OPTIMIZERS, Spec, check_name

LR = "optimizer/lr"
STEP = "optimizer/step"


class _Emitter(Emitter):
    """Adds update nodes, each marked as the optimizer's work, and its state and inputs."""

    def __init__(self, g, name: str):
        super().__init__(g, stmt="optimizer", layer=name, rule=f"optimizer: {name}")
        self.name = name

    def const(self, value: float, dtype: str = "float32") -> int:
        return super().const(float(value), dtype)

    def state(self, name: str, like: TensorType, init: Init | None = None) -> int:
        typ = TensorType(like.shape, like.dtype)
        attrs = {"name": name, "type": typ, "init": init or Init("zeros"), "trainable": False}
        node = self.g.add_op(ops.param, (), attrs, type=typ, stmt="optimizer", layer=self.name)
        self.g.params[name] = node
        return node



def decays(g, param_node) -> bool:
    """Weight decay applies to weight matrices and kernels, not to biases or normalization scales."""
    return g.type_of(param_node).rank >= 2


def trainable(g, loss: str | None = None, frozen=()) -> list[str]:
    """The names of the parameters a step on `loss` (default: the first) updates: its group less the
    `frozen` ones; an error when there is nothing to train."""
    if g.loss is None:
        raise NncError(f"model '{g.model}' has no loss to train", hint="declare one: loss mse(pred, target)")
    names = [n for n in g.loss_params(loss) if n not in frozen]
    if not names:
        what = f"loss {loss}" if loss and len(g.losses) > 1 else f"model '{g.model}'"
        raise NncError(f"{what} has no trainable parameters" + (" left: every one is frozen" if frozen else ""))
    return names


def optimizer_update(spec: Spec, weight_decay: float = 0.0, clip: float | None = None):
    """The optimizer pass, as a Graph -> Graph function: on a graph whose `grads` hold the gradient of every
    trainable parameter, add the update of each (and of the optimizer's state) to `updates`; the gradients
    stop being outputs."""
    def update(g):
        g = g.clone()
        args = {**OPTIMIZERS[check_name(OPTIMIZERS, spec.name, "optimizer")], **spec.args}
        names = list(g.grads)
        e = _Emitter(g, spec.name)
        lr = e.input(LR)
        grads = dict(g.grads)
        if clip:
            grads = _clip_by_global_norm(e, grads, clip)
        if spec.name == "adamw" and weight_decay:
            args["weight_decay"] = weight_decay
        step_rule = {"sgd": _sgd, "momentum": _sgd, "rmsprop": _rmsprop, "adagrad": _adagrad, "adadelta": _adadelta,
                     "adam": _adam, "adamw": _adam}[spec.name]
        shared = _step_counter(e) if spec.name in ("adam", "adamw", "adagrad") else None
        for name in names:
            p = g.params[name]
            dw = grads[name]
            if weight_decay and spec.name != "adamw" and decays(g, p):
                dw = e.add(dw, e.mul(e.const(weight_decay), p))  # L2 coupled into the gradient
            g.updates[name] = step_rule(e, name, p, dw, lr, args, shared)
        g.grads = {}
        g.optimizer = {"name": spec.name, "args": args, "weight_decay": weight_decay, "clip": clip}
        return g
    return update


def _clip_by_global_norm(e, grads: dict, clip: float) -> dict:
    """g · min(1, clip / ‖g‖) with ‖g‖ the norm of all gradients together."""
    total = None
    for dw in grads.values():
        sq = e.sum(e.square(dw), axis=None)
        total = sq if total is None else e.add(total, sq)
    norm = e.sqrt(total)
    scale = e.div(e.const(clip), e.maximum(norm, e.const(clip)))
    return {name: e.mul(dw, scale) for name, dw in grads.items()}


def _step_counter(e):
    t = e.state(STEP, TensorType((), "float32"))
    t1 = e.add(t, e.const(1.0))
    e.g.updates[STEP] = t1
    return t1


def _sgd(e, name, p, dw, lr, args, _t):
    """v = μ·v + g;  p −= lr·(g + μ·v) with Nesterov, lr·v without; plain SGD when μ = 0."""
    mu = args["momentum"]
    if not mu:
        return e.sub(p, e.mul(lr, dw))
    v = e.state(f"optimizer/{name}/velocity", e.g.type_of(p))
    v1 = e.add(e.mul(e.const(mu), v), dw)
    e.g.updates[f"optimizer/{name}/velocity"] = v1
    direction = e.add(dw, e.mul(e.const(mu), v1)) if args["nesterov"] else v1
    return e.sub(p, e.mul(lr, direction))


def _rmsprop(e, name, p, dw, lr, args, _t):
    """s = ρ·s + (1 − ρ)·g²;  p −= lr·g / (√s + ε)."""
    s = e.state(f"optimizer/{name}/square_avg", e.g.type_of(p))
    rho = args["rho"]
    s1 = e.add(e.mul(e.const(rho), s), e.mul(e.const(1 - rho), e.square(dw)))
    e.g.updates[f"optimizer/{name}/square_avg"] = s1
    return e.sub(p, e.div(e.mul(lr, dw), e.add(e.sqrt(s1), e.const(args["eps"]))))


def _adagrad(e, name, p, dw, lr, args, t):
    """s = s + g² (s starts at initial_accumulator_value);  p −= lr/(1 + (t − 1)·lr_decay) · g / (√s + ε)."""
    s = e.state(f"optimizer/{name}/sum", e.g.type_of(p), Init("constant", (float(args["initial_accumulator_value"]),)))
    s1 = e.add(s, e.square(dw))
    e.g.updates[f"optimizer/{name}/sum"] = s1
    if args["lr_decay"]:
        lr = e.div(lr, e.add(e.const(1.0), e.mul(e.sub(t, e.const(1.0)), e.const(args["lr_decay"]))))
    return e.sub(p, e.div(e.mul(lr, dw), e.add(e.sqrt(s1), e.const(args["eps"]))))


def _adadelta(e, name, p, dw, lr, args, _t):
    """s = ρ·s + (1 − ρ)·g²;  Δ = √(u + ε) / √(s + ε) · g;  u = ρ·u + (1 − ρ)·Δ²;  p −= lr·Δ."""
    rho = args["rho"]
    eps = e.const(args["eps"])
    s = e.state(f"optimizer/{name}/square_avg", e.g.type_of(p))
    u = e.state(f"optimizer/{name}/acc_delta", e.g.type_of(p))
    s1 = e.add(e.mul(e.const(rho), s), e.mul(e.const(1 - rho), e.square(dw)))
    delta = e.mul(e.div(e.sqrt(e.add(u, eps)), e.sqrt(e.add(s1, eps))), dw)
    u1 = e.add(e.mul(e.const(rho), u), e.mul(e.const(1 - rho), e.square(delta)))
    e.g.updates[f"optimizer/{name}/square_avg"] = s1
    e.g.updates[f"optimizer/{name}/acc_delta"] = u1
    return e.sub(p, e.mul(lr, delta))


def _adam(e, name, p, dw, lr, args, t):
    """m = β1·m + (1 − β1)·g;  v = β2·v + (1 − β2)·g²;
    p −= lr/(1 − β1ᵗ) · m / (√v / √(1 − β2ᵗ) + ε);  AdamW first shrinks p by lr·λ·p."""
    b1, b2 = args["beta1"], args["beta2"]
    m = e.state(f"optimizer/{name}/m", e.g.type_of(p))
    v = e.state(f"optimizer/{name}/v", e.g.type_of(p))
    m1 = e.add(e.mul(e.const(b1), m), e.mul(e.const(1 - b1), dw))
    v1 = e.add(e.mul(e.const(b2), v), e.mul(e.const(1 - b2), e.square(dw)))
    e.g.updates[f"optimizer/{name}/m"] = m1
    e.g.updates[f"optimizer/{name}/v"] = v1
    bc1 = e.sub(e.const(1.0), e.pow(e.const(b1), t))
    bc2 = e.sub(e.const(1.0), e.pow(e.const(b2), t))
    denom = e.add(e.div(e.sqrt(v1), e.sqrt(bc2)), e.const(args["eps"]))
    step = e.div(e.mul(e.div(lr, bc1), m1), denom)
    if e.name == "adamw" and args.get("weight_decay") and decays(e.g, p):
        p = e.sub(p, e.mul(e.mul(lr, e.const(args["weight_decay"])), p))
    return e.sub(p, step)
