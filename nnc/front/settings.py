"""The `train { }` block: training defaults, checked against what nnc understands.

Values are plain data (numbers, strings, names, calls with keyword arguments);
an optimizer or schedule is a `Spec` of a name and its arguments.
"""

from __future__ import annotations

from ..errors import NncError, nearest
from ..specs import (
    AUGMENTATIONS,
    OPTIMIZERS,
    SCHEDULES,
    TTA,
    Spec,
    argument_problem,
    argument_value,
    check_name,
    image_inputs,
    no_image_input,
    spec_problem,
)
from . import ast

SETTINGS = {
    # name: (kind, default)
    "data": ("str", None),
    "target": ("str", None),
    "optimizer": ("optimizer", "sgd"),
    "lr": ("float", None),
    "batch": ("int", 32),
    "epochs": ("int", 1),
    "schedule": ("schedule", "constant"),
    "weight_decay": ("float", 0.0),
    "clip": ("float", None),
    "seed": ("int", 0),
    "val": ("float", 0.0),
    "threads": ("int", None),
    "window": ("int", None),
    "steps": ("int", None),          # a model without inputs: training steps (there are no epochs of data)
    "alternate": ("names", None),    # several losses: the cycle of steps, one loss per batch
    "freeze": ("names", None),       # parameter-name prefixes training leaves unchanged
    "early_stop": ("int", None),     # epochs without a better validation loss before stopping
    "snapshots": ("int", None),      # keep the parameters every N epochs (snapshot_epoch_N.npz)
    "classes": ("ints", None),       # a classification's data: only the examples of these classes
    "folds": ("int", None),          # K-fold cross-validation: K models, each scored on the fold it did not see
    "augment": ("augment", None),    # random transforms of each training batch's images: [flip, crop(pad=4)]
    "tta": ("tta", None),            # test-time augmentation of the final evaluation: flip or [flip, crops]
    "test": ("float", 0.0),          # data without a test part: samples held out as one (a count or fraction)
    "train_size": ("int", None),     # a seeded subset of this many training examples
    "label_noise": ("float", 0.0),   # each training label, with this probability, replaced by another class
    "shuffle_labels": ("bool", False),  # the training labels permuted (random labels)
    "standardize": ("bool", False),  # features scaled with the training part's mean and standard deviation
    "sync_batchnorm": ("bool", False),  # data-parallel runs: batch norm with the whole batch's statistics
}


def _plain(expr):
    """A setting's value as Python data."""
    if isinstance(expr, ast.Number):
        return expr.value
    if isinstance(expr, (ast.String, ast.Var)):
        text = expr.value if isinstance(expr, ast.String) else expr.name
        return {"true": True, "false": False}.get(text, text)
    if isinstance(expr, ast.Neg):
        inner = _plain(expr.operand)
        if isinstance(inner, (int, float)) and not isinstance(inner, bool):
            return -inner
    if isinstance(expr, ast.ListExpr):
        return [_plain(i) for i in expr.items]
    if isinstance(expr, ast.BinOp) and expr.op == "-":  # data = fashion-mnist: a hyphenated name
        left, right = _plain(expr.left), _plain(expr.right)
        if isinstance(left, str) and isinstance(right, str):
            return f"{left}-{right}"
    if isinstance(expr, ast.Call):
        return expr  # only optimizer and schedule take calls; other kinds reject it
    raise NncError("a setting's value must be a number, a name, a string or a call like adam(lr=0.001)", expr.loc)


def _argument(table: dict, name: str, param: str, expr):
    """An optimizer or schedule argument, of the kind of its default; warmup's `then` is itself a
    schedule: then=step(every=2)."""
    if table is SCHEDULES and param == "then":
        then = _spec(expr, SCHEDULES, "schedule")
        if then.name == "warmup":
            raise NncError("warmup(then=warmup) would never end", expr.loc,
                           hint="use then=constant, step, exponential, cosine or cyclic")
        return then
    if table is AUGMENTATIONS or table is TTA:
        value = _plain(expr)
        problem = argument_problem(name, param, "a call" if isinstance(value, ast.Call) else value)
        if problem:
            raise NncError(problem, expr.loc)
        return argument_value(name, param, value)
    value, default = _plain(expr), table[name][param]
    shown = "a call" if isinstance(value, ast.Call) else str(value).lower() if isinstance(value, bool) else value
    if isinstance(default, bool) and not isinstance(value, bool):
        raise NncError(f"{name}: {param} must be true or false, got {shown}", expr.loc)
    if not isinstance(default, bool) and isinstance(default, (int, float)) and (
            isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0):
        raise NncError(f"{name}: {param} must be a number of 0 or more, got {shown}", expr.loc)
    if table is SCHEDULES and (name, param) == ("plateau", "factor") and value >= 1:
        raise NncError(f"plateau: factor must be below 1, got {value}", expr.loc,
                       hint="the rate is multiplied by it on each plateau: factor=0.5 halves it")
    return value


def _spec(expr, table: dict, what: str) -> Spec:
    if isinstance(expr, ast.Var):
        name, given = expr.name, {}
        loc = expr.loc
    elif isinstance(expr, ast.Call):
        name, loc = expr.func, expr.func_loc
        if name not in table:
            given = {}
        else:
            params = list(table[name])
            if len(expr.args) > len(params):
                raise NncError(f"{name}: too many arguments: got {len(expr.args)}, expected at most {len(params)} "
                               f"({', '.join(params)})", expr.args[len(params)].loc)
            given = {p: _argument(table, name, p, a) for p, a in zip(params, expr.args)}
            for kw in expr.kwargs:
                if kw.name not in table[name]:
                    close = nearest(kw.name, table[name])
                    raise NncError(f"{name}: unknown argument '{kw.name}'", kw.loc,
                                   hint=f"did you mean '{close}'?" if close
                                   else f"{name} takes ({', '.join(table[name])})")
                given[kw.name] = _argument(table, name, kw.name, kw.value)
    else:
        raise NncError(f"{what} must be a name such as {next(iter(table))} or a call such as "
                       f"{next(iter(table))}(lr=0.1)", expr.loc)
    check_name(table, name, what, loc)
    args = dict(table[name])
    args.update(given)
    return Spec(name, args)


def read_train_block(trains: tuple) -> dict:
    """The settings of a file's train block(s) as {name: value}, with defaults filled in."""
    if len(trains) > 1:
        raise NncError("a file has at most one train block; this is the second", trains[1].loc)
    values = {name: (Spec(default, dict(OPTIMIZERS.get(default, SCHEDULES.get(default, {}))))
                     if kind in ("optimizer", "schedule") else default)
              for name, (kind, default) in SETTINGS.items()}
    seen = {}
    for s in (trains[0].settings if trains else ()):
        if s.name not in SETTINGS:
            close = nearest(s.name, SETTINGS)
            raise NncError(f"unknown train setting '{s.name}'", s.name_loc,
                           hint=f"did you mean '{close}'?" if close else f"settings: {', '.join(SETTINGS)}")
        if s.name in seen:
            raise NncError(f"train setting '{s.name}' given twice", s.name_loc)
        seen[s.name] = s
        kind = SETTINGS[s.name][0]
        if kind == "optimizer":
            values[s.name] = _spec(s.value, OPTIMIZERS, "optimizer")
            continue
        if kind == "schedule":
            values[s.name] = _spec(s.value, SCHEDULES, "schedule")
            continue
        if kind in ("augment", "tta"):
            values[s.name] = _spec_list(s.name, s.value)
            continue
        v = _plain(s.value)
        if kind == "names":
            values[s.name] = _names(s.name, v, s.value)
            continue
        if kind == "ints":
            items = v if isinstance(v, list) else [v]
            if not items or not all(isinstance(i, int) and not isinstance(i, bool) and i >= 0 for i in items):
                raise NncError(f"{s.name} must be a list of class numbers such as [0, 1, 2, 3, 4]", s.value.loc)
            values[s.name] = tuple(items)
            continue
        if kind == "bool":
            if not isinstance(v, bool):
                raise NncError(f"{s.name} must be true or false, got {v if not isinstance(v, ast.Call) else 'a call'}",
                               s.value.loc)
            values[s.name] = v
            continue
        least = 0 if s.name == "seed" else 1  # seed 0 is as good a seed as any
        if kind == "int" and not (isinstance(v, int) and not isinstance(v, bool) and v >= least):
            wanted = "an integer of 0 or more" if least == 0 else "a positive integer"
            raise NncError(f"{s.name} must be {wanted}, got {v if not isinstance(v, ast.Call) else 'a call'}",
                           s.value.loc)
        if kind == "float" and not (isinstance(v, (int, float)) and not isinstance(v, bool) and v >= 0):
            raise NncError(f"{s.name} must be a number of 0 or more, got "
                           f"{v if not isinstance(v, ast.Call) else 'a call'}", s.value.loc)
        if s.name == "label_noise" and v > 1:
            raise NncError(f"label_noise is a probability: got {v}, expected a number from 0 to 1", s.value.loc,
                           hint="label_noise = 0.2 changes about one training label in five")
        if kind == "str" and not isinstance(v, str):
            raise NncError(f"{s.name} must be a name or a string, got {v if not isinstance(v, ast.Call) else 'a call'}",
                           s.value.loc)
        values[s.name] = v
    if values["lr"] is not None:
        values["optimizer"] = Spec(values["optimizer"].name, {**values["optimizer"].args, "lr": values["lr"]})
    return values


def _spec_list(setting: str, expr) -> tuple:
    """`augment = flip` or `augment = [flip, crop(pad=4)]` (`tta = [flip, crops]`): a tuple of Specs."""
    table, noun = (AUGMENTATIONS, "augmentation") if setting == "augment" else (TTA, "test-time augmentation")
    specs = []
    for item in expr.items if isinstance(expr, ast.ListExpr) else [expr]:
        if not isinstance(item, (ast.Var, ast.Call)):
            raise NncError(f"{setting} must be a name or a list of names and calls such as "
                           f"{'[flip, crop(pad=4)]' if table is AUGMENTATIONS else '[flip, crops(pad=2)]'}", item.loc)
        spec = _spec(item, table, noun)
        twice = any(s.name == spec.name for s in specs)
        problem = spec_problem(spec) or (f"{spec.name} given twice" if twice else None)
        if problem:
            raise NncError(f"{setting}: {problem}", item.loc)
        specs.append(spec)
    return tuple(specs)


def _names(setting: str, value, expr) -> tuple:
    """`freeze = h1` or `freeze = [h1, h2]`: a tuple of names."""
    names = value if isinstance(value, list) else [value]
    if not names or not all(isinstance(n, str) for n in names):
        raise NncError(f"{setting} must be a name or a list of names such as [h1, h2]", expr.loc)
    return tuple(names)


def check_names(trains: tuple, graph) -> None:
    """The train block's names against the model: `alternate` names its losses, `freeze` prefixes its
    trainable parameters, `augment` and `tta` need an image input; a name that matches nothing is a located
    error."""
    from ..ir.graph import under_prefix

    for s in (trains[0].settings if trains else ()):
        if s.name in ("augment", "tta") and _spec_list(s.name, s.value) and not image_inputs(graph):
            raise no_image_input(s.name, graph, s.value.loc)
        if s.name not in ("alternate", "freeze"):
            continue
        items = s.value.items if isinstance(s.value, ast.ListExpr) else [s.value]
        for item, name in zip(items, _names(s.name, _plain(s.value), s.value)):
            if s.name == "alternate" and name not in graph.losses:
                raise NncError(f"alternate: unknown loss: got {name}, expected one of "
                               f"{', '.join(graph.losses) or 'none'} (the losses of model '{graph.model}')", item.loc,
                               hint="alternate lists loss names, one per training step: [d, d, g]")
            trainable = [n for n, node in graph.params.items() if graph.nodes[node]["attrs"]["trainable"]]
            if s.name == "freeze" and not any(under_prefix(n, name) for n in trainable):
                close = nearest(name, sorted({n.split(".")[0] for n in trainable}))
                raise NncError(f"freeze: no trainable parameter under this prefix: got {name}, expected the name of "
                               f"a layer or parameter of model '{graph.model}'", item.loc,
                               hint=f"did you mean {close}?" if close else
                               f"the trainable parameters: {', '.join(trainable)}")
