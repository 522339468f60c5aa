"""nnc as an ONNX backend (nnc/onnx/backend.py) over a bounded selection of ONNX's operator node tests.

The selection (two tests per operator covered, and some of the function-expanded tests) runs through
`onnx.backend.test.BackendTest` as bench/onnx_conformance.py runs all 1,884, and must pass; operators and
dtypes nnc has not are skips that name what is missing, never errors. The full run is the `slow` test at the
end: it re-measures the figures docs/onnx.md quotes. The tests read one run (the `report` fixture): the full
one when that test is selected (the selection's outcomes are among its), else only the node tests they name.
"""

from __future__ import annotations

import importlib.util
import re
import unittest

import pytest
from conftest import REPO

pytest.importorskip("onnx")

spec = importlib.util.spec_from_file_location("onnx_conformance", REPO / "bench" / "onnx_conformance.py")
conformance = importlib.util.module_from_spec(spec)
spec.loader.exec_module(conformance)

# test_NAME_cpu for each NAME
SELECTION = """
    mvn_expanded celu_expanded clip_expanded mish_expanded swish_expanded swiglu_expanded abs acos acos_example
    acosh acosh_example add add_bcast and2d and3d argmax_keepdims_random argmax_keepdims_example
    argmin_keepdims_random argmin_keepdims_example asin asin_example asinh asinh_example atan atan_example atanh
    atanh_example averagepool_2d_ceil averagepool_2d_default cast_DOUBLE_to_FLOAT cast_FLOAT_to_DOUBLE ceil
    ceil_example celu clip clip_example concat_1d_axis_0 concat_2d_axis_0 cos cos_example cosh cosh_example
    cumsum_1d cumsum_2d_axis_0 div div_bcast dropout_default dropout_random_old elu elu_default erf exp
    exp_example flatten_axis0 flatten_axis1 floor floor_example gelu_tanh_1 gelu_tanh_2 gemm_beta gemm_alpha
    globalaveragepool globalaveragepool_precomputed globalmaxpool globalmaxpool_precomputed greater greater_bcast
    greater_equal greater_equal_bcast hardsigmoid hardsigmoid_default hardswish hardmax_axis_0 hardmax_axis_1
    identity clip_default_inbounds_expanded isinf isinf_negative isnan leakyrelu leakyrelu_default less less_bcast
    less_equal less_equal_bcast log log_example logsoftmax_axis_0 logsoftmax_axis_1 l1normalization_axis_0
    l1normalization_axis_1 matmul_2d matmul_3d max_example max_float32 maxpool_2d_ceil maxpool_2d_default
    mean_example mean_one_input min_example min_float32 mish mod_mixed_sign_float32 mod_mixed_sign_float64 mul
    mul_bcast neg neg_example nllloss_NC nllloss_NCd1 not_2d not_3d or2d or3d prelu_example prelu_broadcast pow
    pow_example reciprocal reciprocal_example reduce_l1_keep_dims_random reduce_l1_keep_dims_example
    reduce_l2_keep_dims_random reduce_l2_keep_dims_example reduce_log_sum_default reduce_log_sum_asc_axes
    reduce_log_sum_exp_keepdims_random reduce_log_sum_exp_keepdims_example reduce_max_bool_inputs
    reduce_max_keepdims_random reduce_mean_keepdims_random reduce_mean_keepdims_example reduce_min_bool_inputs
    reduce_min_keepdims_random reduce_sum_keepdims_random reduce_sum_keepdims_example
    reduce_sum_square_keepdims_random reduce_sum_square_keepdims_example relu reshape_one_dim reshape_zero_dim
    round selu selu_default shrink_hard shrink_soft sigmoid sigmoid_example sign sin sin_example sinh sinh_example
    slice slice_neg softmax_axis_0 softmax_axis_1 sce_sum sce_mean softplus softplus_example softsign
    softsign_example sqrt sqrt_example squeeze squeeze_negative_axes sub sub_bcast sum_example sum_one_input swish
    tan tan_example tanh tanh_example thresholdedrelu thresholdedrelu_default transpose_default
    transpose_all_permutations_0 unsqueeze_axis_0 unsqueeze_axis_1 where_example where_long_example xor2d xor3d
    nllloss_NCd1_weight_ii sce_mean_weight_ii_log_prob cumsum_1d_reverse_exclusive cumsum_2d_negative_axis
    argmax_keepdims_example_select_last_index reduce_log_sum_exp_do_not_keepdims_random gelu_default_1
    reduce_sum_empty_axes_input_noop clip_default_min isinf_positive mod_float32_mixed_sign_fmod_0 hardmax_one_hot
    l2normalization_axis_0 reduce_prod_keepdims_random reduce_prod_do_not_keepdims_example
    mod_float_edge_cases_fmod_0_float32 rms_normalization_3d_axis1_epsilon rms_normalization_4d_axis_negative_1
    attention_4d_causal attention_3d_gqa_attn_mask attention_4d_attn_mask_bool center_crop_pad_crop_and_pad
    center_crop_pad_crop depthtospace_example depthtospace_crd_mode_example expand_dim_changed expand_dim_unchanged
    gather_0 gather_2d_indices gather_elements_0 gather_elements_negative_indices group_normalization_example
    group_normalization_epsilon layer_normalization_2d_axis0 layer_normalization_4d_axis_negative_3 mvn constant_pad
    constant_pad_negative_axes rotary_embedding_with_rotary_dim rotary_embedding_no_position_ids_rotary_dim shape
    shape_start_1_end_negative_1 size size_example spacetodepth spacetodepth_example swiglu swiglu_alpha tile
    tile_precomputed dropout_default_mask matmul_1d_3d nllloss_NCd1_weight_expanded
""".split()


SKIPS = [
    ("test_mod_mixed_sign_int64_cpu", "no float input: nnc computes on float tensors"),
    ("test_cast_FLOAT_to_FLOAT16_cpu", "float16 values: nnc computes on float32 tensors"),
    ("test_nonmaxsuppression_single_box_cpu", "cannot import: NonMaxSuppression"),
    ("test_reduce_sum_empty_set_cpu", "(ReduceSum): nnc has no empty tensors"),
    ("test_strnormalizer_export_monday_casesensintive_lower_cpu", "string values"),
    ("test_training_dropout_cpu", "(Dropout): training_mode (input 2) is computed at run time"),
    ("test_resize_upsample_sizes_nearest_cpu", "nnc's upsample scales height and width by one whole factor"),
]
FULL_RUN = "test_the_full_run_gives_the_figures_docs_onnx_md_quotes"


@pytest.fixture(scope="module")
def report(request) -> dict:
    """One conformance run shared by the module's tests (loading ONNX's node tests alone takes seconds): all
    of them when the full-run test is selected, else only the selection and the skips the tests below read."""
    if any(item.name == FULL_RUN for item in request.session.items):
        return conformance.run()
    return conformance.run(names=[f"test_{name}_cpu" for name in SELECTION] + [test for test, _ in SKIPS])


def test_the_selection_passes(report):
    selected = {f"test_{name}_cpu" for name in SELECTION}
    assert len(selected) == len(SELECTION) >= 150
    outcomes = {t: o for t, o in report["outcomes"].items() if t in selected}
    wrong = {t: o for t, o in outcomes.items() if o[0] != "passed"}
    assert not wrong, f"{len(wrong)} of {len(SELECTION)} selected node tests do not pass: {wrong}"
    assert set(outcomes) == selected, f"selected node tests that did not run: {sorted(selected - set(outcomes))}"


@pytest.mark.parametrize("test,reason", SKIPS)
def test_what_nnc_cannot_run_is_a_skip_with_its_reason(report, test, reason):
    outcome, why = report["outcomes"][test]
    assert outcome == "skipped" and reason in why, (outcome, why)


def doc_figures() -> tuple[dict, list]:
    """The totals and operators docs/onnx.md's Conformance section quotes."""
    text = (REPO / "docs" / "onnx.md").read_text()
    section = text[text.index("## Conformance"):]
    totals = re.search(r"(\d[\d,]*) of ([\d,]+) node tests pass, (\d+) fail, ([\d,]+) are skipped", section)
    numbers = [int(g.replace(",", "")) for g in totals.groups()]
    ops = re.search(r"operators covered \(\d+\): (.*?)\.\n", section, re.S).group(1)
    return dict(zip(("passed", "tests", "failed", "skipped"), numbers)), [o.strip(" `\n") for o in ops.split(",")]


@pytest.mark.slow
def test_the_full_run_gives_the_figures_docs_onnx_md_quotes(report):
    totals, operators = doc_figures()
    assert report["errored"] == 0
    assert {k: report[k] for k in totals} == totals
    assert report["operators"] == operators


def _model(op_type: str, attrs: dict, shape=(2, 3), inputs=("x",), initializers=()):
    from onnx import TensorProto, helper, numpy_helper

    node = helper.make_node(op_type, list(inputs), ["y"], **attrs)
    graph = helper.make_graph([node], "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, shape)],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
                              [numpy_helper.from_array(v, k) for k, v in initializers])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])


def test_translations_read_as_formulas_of_nnc_functions():
    """What `nnc import` writes for ops_math's operators: the formula, one statement per helper value."""
    import numpy as np

    from nnc.onnx.importer import import_onnx

    text = import_onnx(_model("ArgMax", {"axis": 1, "keepdims": 0})).text
    assert "y_hits = equal(x, max(x, axis=1, keepdims=true))" in text
    assert "y = 3.0 - max(y_hits * [3.0, 2.0, 1.0], axis=1, keepdims=false)" in text
    text = import_onnx(_model("ReduceLogSumExp", {"keepdims": 1}, inputs=("x", "axes"),
                              initializers=[("axes", np.array([1]))])).text
    assert "y_max = max(x, axis=[1], keepdims=true)" in text
    assert "y = log(sum(exp(x - y_max), axis=[1], keepdims=true)) + y_max" in text


def test_an_operator_without_a_counterpart_fails_the_import_naming_the_node():
    from nnc.errors import NncError
    from nnc.onnx.importer import import_onnx

    with pytest.raises(NncError, match=r"ONNX node 'y' \(LpNormalization\): p=3: ONNX defines p = 1 or 2"):
        import_onnx(_model("LpNormalization", {"p": 3}))


def test_one_hot_of_float_indices_computed_in_the_model():
    """ONNX's OneHot tests feed the depth as an input, which nnc must know when it compiles: here it is an
    initializer, the indices (negative and out of range among them) a float input, the values [off, on]."""
    import numpy as np

    from nnc.onnx.backend import onnx_backend

    model = _model("OneHot", {"axis": 1}, shape=(2, 3), inputs=("x", "depth", "values"),
                   initializers=[("depth", np.array(4, np.int64)), ("values", np.array([-1.0, 2.0], np.float32))])
    x = np.array([[0.0, 3.0, -1.0], [1.0, 7.0, -4.0]], np.float32)
    try:
        (y,) = onnx_backend().prepare(model).run([x])
    except unittest.SkipTest as e:   # the backend's "nnc cannot run this" is a failure here
        pytest.fail(str(e))
    want = np.where(np.arange(4)[None, :, None] == np.where(x < 0, x + 4, x)[:, None, :], 2.0, -1.0)
    np.testing.assert_array_equal(y, want)
