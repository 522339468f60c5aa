"""The op registry (nnc/ir/ops/registry.py): every primitive carries all of its rules.

Every op has a shape rule, a NumPy reference, a doc line, valid groups, a
VJP rule (or an explicit NoGradient) and, unless it is a leaf, one LLVM lowering
in the backend's tables.
"""

from __future__ import annotations

import inspect

import pytest

from nnc.ir.ops import BINARY, COMPARE, ELEMENTWISE, LEAF, PROJECTION, REGISTRY, UNARY, NoGradient, Op, get, ops_in
from nnc.ir.ops.registry import GROUPS

OPS = sorted(REGISTRY)


def keyword_names(fn) -> tuple[set, bool]:
    """The keyword-only parameter names of fn and whether it also takes **kwargs."""
    params = inspect.signature(fn).parameters.values()
    names = {p.name for p in params if p.kind is p.KEYWORD_ONLY}
    return names, any(p.kind is p.VAR_KEYWORD for p in params)


def test_registry_is_populated_and_keyed_by_name():
    assert len(REGISTRY) >= 40
    for name, op in REGISTRY.items():
        assert isinstance(op, Op) and op.name == name and get(name) is op


@pytest.mark.parametrize("name", OPS)
def test_op_has_shape_rule_reference_doc_and_groups(name):
    op = REGISTRY[name]
    assert callable(op.shape), "no shape rule"
    assert callable(op.ref), "no NumPy reference"
    assert isinstance(op.doc, str) and op.doc.strip(), "no doc line"
    assert op.groups <= GROUPS, f"unknown groups {set(op.groups) - GROUPS}"
    assert op.arity is None or (isinstance(op.arity, int) and op.arity >= 0)
    assert isinstance(op.attrs, tuple) and all(isinstance(a, str) for a in op.attrs)


# Attributes the interpreter keeps to itself rather than passing to a reference (nnc/interp.py).
NOT_PASSED_TO_REF = {"type", "name", "init", "trainable"}


@pytest.mark.parametrize("name", OPS)
def test_rules_accept_every_declared_attribute(name):
    """A graph node hands its attributes to the shape rule and (most of them) to the reference."""
    op = REGISTRY[name]
    for fn, skipped in ((op.shape, set()), (op.ref, NOT_PASSED_TO_REF)):
        names, takes_any = keyword_names(fn)
        params = set(inspect.signature(fn).parameters)
        missing = {a for a in set(op.attrs) - skipped if a not in names and a not in params}
        assert takes_any or not missing, f"{fn} does not accept {sorted(missing)}"


@pytest.mark.parametrize("name", OPS)
def test_groups_agree_with_arity(name):
    op = REGISTRY[name]
    if op.is_a(LEAF):
        assert op.arity == 0
    if op.is_a(UNARY):
        assert op.arity == 1 and op.is_a(ELEMENTWISE)
    if op.is_a(BINARY):
        assert op.arity == 2 and op.is_a(ELEMENTWISE)
    if op.is_a(ELEMENTWISE):
        assert op.is_a(UNARY) or op.is_a(BINARY) or op is get("where")   # where(c, a, b): the one of three
    if op.is_a(COMPARE):
        assert op.is_a(BINARY)


def test_groups_are_queried_not_listed():
    assert {op.name for op in ops_in(LEAF)} >= {"input", "param", "const"}
    assert {"relu", "add", "mul"} <= {op.name for op in ops_in(ELEMENTWISE)}
    assert all(op.is_a(COMPARE) for op in ops_in(COMPARE))


def test_every_op_has_a_vjp():
    missing = [name for name in OPS if REGISTRY[name].vjp is None]
    assert not missing, f"no gradient rule and no NoGradient: {missing}"
    wrong = [name for name in OPS if not isinstance(REGISTRY[name].vjp, NoGradient)
             and REGISTRY[name].arity is not None and len(REGISTRY[name].vjp) != REGISTRY[name].arity]
    assert not wrong, f"not one rule (or None) per operand: {wrong}"


def test_every_op_has_exactly_one_lowering():
    """Each op that computes something is in exactly one of the backend's two lowering tables."""
    from nnc.backend.lower_kernels import KERNELS
    from nnc.backend.lower_pointwise import POINTWISE, READ_IN_PLACE

    for name in OPS:
        op = REGISTRY[name]
        tables = [t for t, table in (("pointwise", POINTWISE), ("kernels", KERNELS)) if op in table]
        stored_only = op.is_a(LEAF) or op.is_a(PROJECTION) or op in READ_IN_PLACE  # storage, or read in place
        assert len(tables) == (0 if stored_only else 1), f"{name}: in {tables or 'no lowering table'}"
        if op.is_a(ELEMENTWISE):
            assert tables == ["pointwise"], f"{name} is elementwise, so it fuses: it needs a pointwise rule"
    assert set(POINTWISE) | set(KERNELS) <= set(REGISTRY.values())


def test_every_op_is_a_constant_of_the_ops_package():
    """`ops.<name>` names every op (a misspelt op is an AttributeError where it is written)."""
    from nnc.ir import ops

    assert set(ops.__all__) >= set(OPS)
    for name in OPS:
        assert getattr(ops, name) is REGISTRY[name]


def test_an_op_compared_with_a_string_is_an_error():
    from nnc.ir import ops

    with pytest.raises(TypeError, match="is ops.matmul"):
        _ = ops.matmul == "matmul"
    assert ops.matmul is get("matmul") and ops.matmul != ops.add
