"""Random .nn programs from the grammar: often valid, sometimes subtly wrong.

Owns `program(rng)`, which writes a whole file: blocks (`def`), one or more
models (inputs of random shapes, params, layer calls with random arguments,
outputs, a loss) and sometimes a `train { }` block. The generator tracks the
shape of each name it binds, so most calls get arguments that fit; with
probability `wild` an argument is drawn from anything in scope or from a
table of awkward numbers, which exercises the builder's error paths. Calls to
functions it has no special case for are made from the signature nnc itself
declares (nnc/layers.py), so new functions get fuzzed without changes here.
"""

from __future__ import annotations

import inspect
import random

from nnc.front.layers import FUNCTIONS
from nnc.front.settings import SETTINGS
from nnc.specs import OPTIMIZERS, SCHEDULES

AWKWARD_NUMBERS = ["0", "1", "-1", "0.5", "2", "3", "-3", "7", "1e308", "1e309", "1e-320", "99999999999999999999",
                   "9223372036854775807", "9223372036854775808", "1000000000", "65536", "2147483648", ".5", "5.",
                   "0.0", "1e3", "123456789012", "4294967296"]
UNARY = ["relu", "sigmoid", "tanh", "exp", "log", "sqrt", "abs", "square", "sign", "step"]
INITS = ["zeros", "ones", "xavier", "he", "glorot", "kaiming", "normal(0, 0.1)", "uniform(-1, 1)", "constant(0.5)",
         "normal(std=2)", "uniform(hi=-1)", "0.25", "-2"]


def _prod(dims) -> int:
    n = 1
    for d in dims:
        n *= d
    return n


class _Gen:
    def __init__(self, rng: random.Random, wild: float):
        self.rng = rng
        self.wild = wild
        self.counter = 0
        self.blocks: list[tuple] = []  # (name, params, shape of the first, shape of the result)

    # ---- small helpers ----------------------------------------------------------------

    def chance(self, p: float) -> bool:
        return self.rng.random() < p

    def fresh(self, stem: str = "h") -> str:
        self.counter += 1
        return f"{stem}{self.counter}"

    def small(self, lo: int = 1, hi: int = 8) -> int:
        return self.rng.randint(lo, hi)

    def number(self) -> str:
        if self.chance(0.7):
            return str(self.rng.choice([self.small(), round(self.rng.uniform(-3, 3), 3), 0.5, 0.001]))
        return self.rng.choice(AWKWARD_NUMBERS)

    def int_arg(self, good: int) -> str:
        return str(good) if not self.chance(self.wild) else self.rng.choice(AWKWARD_NUMBERS + ["x", "[2, 2]", "true"])

    @staticmethod
    def shape_text(shape) -> str:
        return "[" + ", ".join(str(d) for d in shape) + "]"

    # ---- values in scope -----------------------------------------------------------------

    def pick(self, env: dict, rank: int | None = None, dtype: str = "float"):
        """A name bound to a tensor of `rank` (any rank if None); sometimes anything in scope."""
        wild = self.chance(self.wild)
        names = [n for n, (s, d) in env.items() if d == dtype and s is not None and (rank is None or len(s) == rank)]
        if names and not wild:
            n = self.rng.choice(names)
            return n, env[n][0]
        if rank == 2 and not wild:  # flatten something bigger
            big = [n for n, (s, d) in env.items() if d == dtype and s and len(s) > 2
                   and all(isinstance(k, int) for k in s[1:])]
            if big:
                n = self.rng.choice(big)
                return f"flatten({n})", (env[n][0][0], _prod(env[n][0][1:]))
        floats = [n for n, (s, d) in env.items() if d == dtype]
        if floats and not wild:
            n = self.rng.choice(floats)
            return n, env[n][0]
        if env and self.chance(0.8):
            n = self.rng.choice(list(env))
            return n, env[n][0]
        return self.rng.choice(["x", "undefined_thing", "B", "zeros", "relu", "1.5"]), None

    # ---- expressions -------------------------------------------------------------------------

    def expr(self, env: dict, depth: int = 0):
        """(text, shape or None) of an expression over the tensors in env."""
        if depth > 3 or self.chance(0.15):
            name, shape = self.pick(env)
            return name, shape
        images = any(s is not None and len(s) == 4 for s, d in env.values()) or self.chance(self.wild)
        kind = self.rng.choices(
            ["dense", "unary", "binop", "conv", "pool", "flatten", "norm", "reduce", "reshape", "misc", "block",
             "generic", "neg", "number"],
            [10, 8, 8, 6 * images, 3 * images, 3, 3, 2, 2, 3, 2, 3 * self.wild, 1, 1])[0]
        return getattr(self, "e_" + kind)(env, depth)

    def sub(self, env, depth, rank=None):
        """An operand: usually a name of the right rank, sometimes a nested expression."""
        if self.chance(0.35):
            text, shape = self.expr(env, depth + 1)
            if rank is None or (shape is not None and len(shape) == rank) or self.chance(self.wild):
                return text, shape
        return self.pick(env, rank)

    def kwargs(self, pairs) -> str:
        chosen = [f"{k}={v}" for k, v in pairs if self.chance(0.3)]
        return "".join(", " + c for c in chosen)

    def e_dense(self, env, depth):
        x, s = self.sub(env, depth, 2)
        units = self.small(1, 16)
        extra = self.kwargs([("bias", self.rng.choice(["true", "false"])), ("init", self.rng.choice(INITS)),
                             ("name", f'"{self.fresh("d")}"')])
        return f"dense({x}, {self.int_arg(units)}{extra})", (s[0], units) if s and len(s) == 2 else None

    def e_unary(self, env, depth):
        fn = self.rng.choice(UNARY + ["leaky_relu", "elu", "dropout", "softmax", "log_softmax"])
        x, s = self.sub(env, depth)
        extra = ""
        if fn in ("leaky_relu", "elu") and self.chance(0.3):
            extra = f", {self.number()}"
        elif fn == "dropout" and self.chance(0.7):
            extra = f", {self.rng.choice(['0.2', '0.5', '0', '0.99', '1', '-0.1'])}"
        elif fn in ("softmax", "log_softmax") and self.chance(0.3):
            extra = f", axis={self.rng.choice(['-1', '0', '1', '3', '-5'])}"
        return f"{fn}({x}{extra})", s

    def e_binop(self, env, depth):
        op = self.rng.choice(["+", "-", "*", "/", "**", "@"])
        a, sa = self.sub(env, depth)
        if op == "@" and sa is not None and len(sa) == 2:
            cands = [n for n, (s, d) in env.items() if s is not None and len(s) == 2 and s[0] == sa[1]]
            if cands and not self.chance(self.wild):
                b = self.rng.choice(cands)
                return f"{a} @ {b}", (sa[0], env[b][0][1])
        if self.chance(0.3) and op != "@":
            b, sb = self.number(), ()
        else:
            same = [n for n, (s, d) in env.items() if s == sa and d == "float"]
            b, sb = (self.rng.choice(same), sa) if same and not self.chance(self.wild) else self.sub(env, depth)
        text = f"({a} {op} {b})" if self.chance(0.3) else f"{a} {op} {b}"
        return text, sa if sb in ((), sa) else None

    def e_neg(self, env, depth):
        x, s = self.sub(env, depth)
        return f"-{x}", s

    def e_number(self, env, depth):
        return self.number(), ()

    def e_conv(self, env, depth):
        x, s = self.sub(env, depth, 4)
        filters, kernel = self.small(1, 6), self.small(1, 3)
        stride, pad = (self.small(1, 2), self.small(0, 1)) if self.chance(0.4) else (1, 0)
        kernel_text = self.rng.choice([str(kernel), f"[{kernel}, {kernel}]"])
        text = f"conv2d({x}, {self.int_arg(filters)}, {kernel_text}"
        text += (f", stride={self.int_arg(stride)}" if stride != 1 else "") + (f", pad={pad}" if pad else "")
        text += self.kwargs([("bias", "false"), ("init", self.rng.choice(INITS))]) + ")"
        if s and len(s) == 4 and all(isinstance(d, int) for d in s[2:]):
            ho, wo = ((d + 2 * pad - kernel) // stride + 1 for d in s[2:])
            return text, (s[0], filters, ho, wo) if ho > 0 and wo > 0 else None
        return text, None

    def e_pool(self, env, depth):
        x, s = self.sub(env, depth, 4)
        if self.chance(0.2):
            return f"global_avgpool({x})", s[:2] if s and len(s) == 4 else None
        size = self.small(1, 3)
        fn = self.rng.choice(["maxpool", "avgpool"])
        if s and len(s) == 4 and all(isinstance(d, int) for d in s[2:]):
            ho, wo = ((d - size) // size + 1 for d in s[2:])
            return f"{fn}({x}, {self.int_arg(size)})", (s[0], s[1], ho, wo) if ho > 0 and wo > 0 else None
        return f"{fn}({x}, {self.int_arg(size)})", None

    def e_flatten(self, env, depth):
        x, s = self.sub(env, depth, 4 if self.chance(0.5) else 3)
        if s and len(s) >= 2 and all(isinstance(d, int) for d in s[1:]):
            n = 1
            for d in s[1:]:
                n *= d
            return f"flatten({x})", (s[0], n)
        return f"flatten({x})", None

    def e_norm(self, env, depth):
        fn = self.rng.choice(["batchnorm", "layernorm"])
        x, s = self.sub(env, depth, self.rng.choice([2, 4]))
        extra = self.kwargs([("eps", self.rng.choice(["1e-5", "0", "1e308"])),
                             ("momentum", self.rng.choice(["0.1", "0.9"] + (["2"] if self.chance(self.wild) else [])))
                             if fn == "batchnorm" else ("eps", "0.1")])
        return f"{fn}({x}{extra})", s

    def e_reduce(self, env, depth):
        fn = self.rng.choice(["sum", "mean", "max"])
        x, s = self.sub(env, depth)
        if self.chance(0.5) or not s:
            return f"{fn}({x})", ()
        axis = self.rng.randrange(-len(s), len(s) + 1)
        keep = self.chance(0.3)
        if not -len(s) <= axis < len(s):
            return f"{fn}({x}, {axis})", None
        out = tuple(1 if i == axis % len(s) else d for i, d in enumerate(s)) if keep else \
            tuple(d for i, d in enumerate(s) if i != axis % len(s))
        return f"{fn}({x}, axis={axis}{', keepdims=true' if keep else ''})", out

    def e_reshape(self, env, depth):
        x, s = self.sub(env, depth)
        if s and s[0] == "B" and all(isinstance(d, int) for d in s[1:]):
            n = 1
            for d in s[1:]:
                n *= d
            target = self.rng.choice([("B", n), ("B", -1), ("B", n, 1), ("B", 1, 1, n)])
            if self.chance(self.wild):
                target = ("B", n + 1)
            return f"reshape({x}, {self.shape_text(target)})", None if -1 in target or n + 1 in target else target
        return f"reshape({x}, [B, -1])", None

    def e_misc(self, env, depth):
        choice = self.rng.choice(["transpose", "concat", "maximum", "minimum", "gram"])
        x, s = self.sub(env, depth)
        if choice == "gram":  # [B, n] @ [n, B]: a tensor whose second dim is symbolic
            return f"{x} @ transpose({x})", (s[0], s[0]) if s is not None and len(s) == 2 else None
        if choice == "transpose":
            if s and self.chance(0.5):
                perm = list(range(len(s)))
                self.rng.shuffle(perm)
                return f"transpose({x}, {perm})", tuple(s[p] for p in perm)
            return f"transpose({x})", tuple(reversed(s)) if s is not None else None
        if choice == "concat":
            y, _ = self.pick({n: v for n, v in env.items() if v[0] == s} or env)
            axis = self.rng.choice(["", ", axis=1", ", axis=0", ", axis=-1", ", 7"])
            return f"concat([{x}, {y}]{axis})", None
        y, _ = self.sub(env, depth) if self.chance(0.5) else (self.number(), ())
        return f"{choice}({x}, {y})", s

    def e_block(self, env, depth):
        if not self.blocks:
            return self.e_dense(env, depth)
        name, params, shape, result_shape = self.rng.choice(self.blocks)
        first = self.pick(env, len(shape) if shape else None)[0]
        args = [first] + [str(self.small(1, 8)) for _ in params[1:]]
        if self.chance(0.2) and len(params) > 1:
            args[1] = f"{params[1]}={args[1]}"
        if self.chance(self.wild):
            args = args[:-1] if self.chance(0.5) else args + ["1"]
        return f"{name}({', '.join(args)})", result_shape

    def e_generic(self, env, depth):
        """Any function nnc declares, with arguments chosen from its signature."""
        name = self.rng.choice(sorted(FUNCTIONS))
        params = list(inspect.signature(FUNCTIONS[name]).parameters.values())[1:]
        args = []
        for p in params:
            if p.kind is p.VAR_POSITIONAL:
                args += [self.pick(env)[0] for _ in range(self.rng.randint(0, 2))]
                continue
            if p.default is not p.empty and self.chance(0.6):
                continue
            value = self.value_of_kind(p.annotation, env, depth)
            args.append(f"{p.name}={value}" if p.default is not p.empty or self.chance(0.2) else value)
        return f"{name}({', '.join(args)})", None

    def value_of_kind(self, kind: str, env, depth) -> str:
        if kind in ("Tensor", "TensorLike"):
            return self.sub(env, depth)[0]
        if kind == "Tensors":
            return "[" + ", ".join(self.pick(env)[0] for _ in range(self.rng.randint(0, 3))) + "]"
        if kind in ("int", "Size", "Axis"):
            return self.rng.choice([str(self.small(0, 4)), "-1", "[1, 2]", self.number()])
        if kind in ("Dims", "Ints"):
            return self.shape_text([self.rng.choice([1, 2, -1, "B", 3]) for _ in range(self.rng.randint(0, 4))])
        if kind == "float":
            return self.number()
        if kind == "bool":
            return self.rng.choice(["true", "false", "1"])
        if kind == "Init":
            return self.rng.choice(INITS)
        if kind == "str":
            return f'"{self.fresh("n")}"'
        return self.number()

    # ---- statements and files ----------------------------------------------------------------

    def input_shape(self):
        kind = self.rng.choice(["vec", "vec", "img", "scalar", "wide", "seq", "symbolic"])
        if kind == "symbolic":  # more symbols than the batch
            return self.rng.choice([("B", "T"), ("B", "T", self.small(1, 4)), ("N", self.small(1, 4)), ("B", "B")])
        if kind == "vec":
            return ("B", self.small(1, 12))
        if kind == "img":
            return ("B", self.small(1, 3), self.small(4, 10), self.small(4, 10))
        if kind == "scalar":
            return ()
        if kind == "seq":
            return ("B", self.small(1, 5), self.small(1, 6))
        return ("B", self.rng.choice([784, 1, 100]))

    def model(self, name: str) -> str:
        env: dict = {}
        lines = []
        for _ in range(self.rng.randint(1, 3)):
            n, shape = self.fresh("x"), self.input_shape()
            dtype = self.rng.choice(["", "", "", "f64 "])
            lines.append(f"input {n}: {dtype}{self.shape_text(shape)}" if shape or self.chance(0.5) else f"input {n}")
            env[n] = (shape, "float")
        labels = None
        if self.chance(0.5):
            labels = self.fresh("label")
            lines.append(f"input {labels}: int[B]")
            env[labels] = (("B",), "int")
        for _ in range(self.rng.randint(0, 2)):
            n = self.fresh("w")
            shape = tuple(self.small(1, 6) for _ in range(self.rng.randint(0, 2)))
            init = f" = {self.rng.choice(INITS)}" if self.chance(0.5) else ""
            lines.append(f"param {n}: {self.shape_text(shape)}{init}")
            env[n] = (shape, "float")
        for _ in range(self.rng.randint(1, 7)):
            text, shape = self.expr(env)
            target = self.rng.choice(list(env)) if self.chance(self.wild / 2) else self.fresh("h")
            lines.append(f"{target} = {text}")
            if target not in env or env[target][1] == "float":
                env[target] = (shape, "float")
        float_names = [n for n, (s, d) in env.items() if d == "float"]
        outs = self.rng.sample(float_names, k=min(len(float_names), self.rng.randint(0, 2))) if float_names else []
        if outs:
            lines.append("output " + ", ".join(outs))
        if self.chance(0.6) or not outs:
            lines.append("loss " + self.loss(env, labels))
        return f"model {name} {{\n  " + "\n  ".join(lines) + "\n}\n"

    def loss(self, env, labels) -> str:
        twod = [n for n, (s, d) in env.items() if d == "float" and s is not None and len(s) == 2]
        kind = self.rng.choice(["xent", "mse", "bce", "mean", "hinge", "generic"])
        if kind in ("xent", "hinge") and labels and twod:
            fn = "cross_entropy" if kind == "xent" else "hinge"
            text = f"{fn}({self.rng.choice(twod)}, {labels})"
        elif kind in ("mse", "bce", "xent") and twod:
            a = self.rng.choice(twod)
            same = [n for n in twod if env[n][0] == env[a][0]]
            fn = {"mse": "mse", "bce": "binary_cross_entropy", "xent": "mae"}[kind]
            text = f"{fn}({a}, {self.rng.choice(same)})"
        elif kind == "generic":
            text = self.expr(env)[0] if self.chance(self.wild) else f"mean({self.expr(env)[0]})"
        else:
            text = f"mean({self.pick(env)[0]})"
        if self.chance(0.2):
            text += f" + {self.number()} * l2({self.pick(env)[0]})"
        return text

    def block(self) -> str:
        name = self.fresh("blk")
        params = ["x"] + [f"p{i}" for i in range(self.rng.randint(0, 2))]
        shape = self.rng.choice([("B", 4), ("B", 2, 6, 6), None])
        env = {"x": (shape, "float")}
        for p in params[1:]:
            env[p] = ((), "float")
        lines = []
        recursive = self.chance(0.1)
        if recursive:  # a block that calls itself, directly or through another
            self.blocks.append((name, params, shape, None))
        for _ in range(self.rng.randint(1, 3)):
            text, s = self.expr(env)
            n = self.fresh("t")
            lines.append(f"{n} = {text}")
            env[n] = (s, "float")
        result = self.rng.choice([n for n in env if n not in params[1:]])
        if not recursive:
            self.blocks.append((name, params, shape, env[result][0]))
        elif self.chance(0.5):
            result = f"{self.rng.choice(self.blocks)[0]}({', '.join(params)})"
        if self.chance(0.95):
            lines.append(f"return {result}")
        return f"def {name}({', '.join(params)}) {{\n  " + "\n  ".join(lines) + "\n}\n"

    def train(self) -> str:
        lines = []
        for name in self.rng.sample(sorted(SETTINGS), k=self.rng.randint(0, 5)):
            kind = SETTINGS[name][0]
            if kind == "optimizer":
                opt = self.rng.choice(sorted(OPTIMIZERS) + ["adamx"])
                args = [f"{k}={self.number()}" for k in OPTIMIZERS.get(opt, {"lr": 0}) if self.chance(0.3)]
                value = f"{opt}({', '.join(args)})" if args or self.chance(0.5) else opt
            elif kind == "schedule":
                value = self.rng.choice(sorted(SCHEDULES) + ["step(every=2)", "cosine(min_lr=0.1)", "linear"])
            elif kind == "str":
                value = self.rng.choice(['"data/x.csv"', "mnist", "xor"] + (["3"] if self.chance(self.wild) else []))
            elif self.chance(self.wild):
                value = self.number()
            else:
                value = str(self.small(1, 100)) if kind == "int" else str(self.rng.choice([0.1, 0.001, 0, 1]))
            lines.append(f"{name} = {value}")
        if self.chance(self.wild):
            lines.append(f"bogus_setting = {self.number()}")
        return "train {\n  " + "\n  ".join(lines) + "\n}\n"

    def program(self) -> str:
        parts = [self.block() for _ in range(self.rng.choice([0, 0, 1, 2]))]
        parts += [self.model(self.fresh("m")) for _ in range(self.rng.choice([1, 1, 1, 2]))]
        if self.chance(0.4):
            parts.append(self.train())
        if self.chance(0.05):
            self.rng.shuffle(parts)
        return "\n".join(parts)


def program(rng: random.Random, wild: float = 0.1) -> str:
    """One random .nn file; `wild` is the chance that an argument is drawn without regard to fit."""
    return _Gen(rng, wild).program()
