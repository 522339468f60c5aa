"""Parameters that commands and the Python API compute with: never random without being asked, and read from a
run folder, a checkpoint, a parameter .npz or a dict alike.

Every command that computes with parameters (eval, eval --data, grad, explain, predict, viz with values)
refuses randomly initialized parameters nobody gave it, naming them and the two ways out (`--params RUN_DIR`,
`--random-params`); `Model.eval` and `Model.grad` do the same with `params=` and `random_params=True`.
Constant initializers (zeros, ones, constant(v): the course's gates) are not random. One xor run, trained
once for the module, serves as the run folder every way of naming parameters is checked against.
"""

from __future__ import annotations

import numpy as np
import pytest
from conftest import EXAMPLES, run_main

import nnc
from nnc.cli.main import main
from nnc.errors import NncError

XOR = EXAMPLES / "xor.nn"
XOR_MISSING = ("error: no values for the randomly initialized parameters of model 'xor': "
               "h.weight [2, 8], z.weight [8, 1]")
CLI_HINT = ("hint: give trained values with --params RUN_DIR (a run folder, a checkpoint or a parameter .npz), "
            "or add --random-params to compute with seeded random values")
CASES = np.array([[0, 0], [0, 1], [1, 0], [1, 1]], np.float32)


@pytest.fixture(scope="module")
def xor_run(tmp_path_factory):
    folder = tmp_path_factory.mktemp("xor") / "run"
    assert main(["run", str(XOR), "--out", str(folder), "--quiet"]) == 0
    return folder


@pytest.fixture
def cases(tmp_path):
    path = tmp_path / "cases.npy"
    np.save(path, CASES)
    return path


def commands(tmp_path, cases) -> dict:
    """Each command that computes with the parameters, on xor, with every input it needs."""
    return {
        "eval": ["eval", XOR, "--at", f"x={CASES.tolist()}"],
        "eval --data": ["eval", XOR, "--data", "xor"],
        "grad": ["grad", XOR, "--random-inputs", "2"],
        "explain": ["explain", XOR, "--random-inputs", "1"],
        "predict": ["predict", XOR, "--input", cases],
        "viz": ["viz", XOR, "--random-inputs", "2", "-o", tmp_path / "xor.dot"],
    }


COMMANDS = ["eval", "eval --data", "grad", "explain", "predict", "viz"]


@pytest.mark.parametrize("command", COMMANDS)
def test_commands_refuse_random_parameters_nobody_gave(command, tmp_path, cases):
    result = run_main(*commands(tmp_path, cases)[command])
    assert result.returncode == 1, result.stderr
    assert result.stderr == f"{XOR_MISSING}\n{CLI_HINT}\n"
    assert result.stdout == ""


@pytest.mark.parametrize("command", COMMANDS)
def test_random_params_asks_for_seeded_random_values(command, tmp_path, cases):
    result = run_main(*commands(tmp_path, cases)[command], "--random-params", "--seed", "4")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("random parameters (seed 4): h.weight, z.weight\n")


@pytest.mark.parametrize("command", COMMANDS)
def test_a_run_folder_is_accepted_as_params_by_every_command(command, tmp_path, cases, xor_run):
    argv = commands(tmp_path, cases)[command]
    folder = run_main(*argv, "--params", xor_run)
    assert folder.returncode == 0, folder.stderr
    assert "random parameters" not in folder.stdout
    checkpoint = run_main(*argv, "--params", xor_run / "checkpoint.npz")
    assert checkpoint.returncode == 0, checkpoint.stderr
    assert folder.stdout == checkpoint.stdout


def test_a_partial_parameter_file_names_what_it_lacks(tmp_path):
    partial = tmp_path / "h.npz"
    model = nnc.load(XOR)
    np.savez(partial, **{k: v for k, v in model.init_params(seed=1).items() if k.startswith("h.")})
    refused = run_main("eval", XOR, "--at", "x=[[0,1]]", "--params", partial)
    assert refused.returncode == 1
    assert refused.stderr.startswith(
        "error: no values for the randomly initialized parameters of model 'xor': z.weight [8, 1]\nhint: give")
    filled = run_main("eval", XOR, "--at", "x=[[0,1]]", "--params", partial, "--random-params")
    assert filled.returncode == 0, filled.stderr
    assert filled.stdout.startswith("random parameters (seed 0): z.weight\n")


def test_constant_initializers_are_not_random():
    assert nnc.load(EXAMPLES / "and_gate.nn").random_param_names() == []
    assert nnc.load(EXAMPLES / "mlp_chain_rule.nn").random_param_names() == []
    assert nnc.load(EXAMPLES / "linreg.nn").random_param_names() == []
    result = run_main("eval", EXAMPLES / "and_gate.nn", "--at", f"x={CASES.tolist()}")
    assert result.returncode == 0, result.stderr
    assert "random" not in result.stdout


def test_python_api_refuses_random_parameters_unless_asked():
    from nnc.model import MissingParams

    m = nnc.load(XOR)
    with pytest.raises(NncError) as err:
        m.eval({"x": CASES})
    assert isinstance(err.value, MissingParams) and err.value.missing == ["h.weight", "z.weight"]
    assert err.value.format() == (
        f"{XOR_MISSING}\nhint: pass params=\"RUN_DIR\" (a run folder, a checkpoint or parameter .npz, or a dict "
        f"of arrays), or random_params=True to compute with seeded random values")
    with pytest.raises(MissingParams):
        m.grad({"x": CASES, "target": np.zeros((4, 1))})
    seeded = m.init_params(seed=2)
    np.testing.assert_array_equal(m.eval({"x": CASES}, random_params=True, seed=2)["y"],
                                  m.eval({"x": CASES}, seeded)["y"])
    grads = m.grad({"x": CASES, "target": np.ones((4, 1))}, random_params=True, seed=2).grads
    assert set(grads) == {"h.weight", "h.bias", "z.weight", "z.bias", "x", "target"}


def test_python_api_takes_a_run_folder_a_checkpoint_a_dict_of_it_or_its_arrays(xor_run):
    m = nnc.load(XOR)
    path = xor_run / "checkpoint.npz"
    with np.load(path) as saved:
        raw = dict(saved)  # with __meta__ and the optimizer state, as a user would load it
    trained = {k: v for k, v in raw.items() if k in m.param_types}
    expected = m.eval({"x": CASES}, trained)["y"]
    for params in (xor_run, str(xor_run), path, str(path), raw):
        np.testing.assert_array_equal(m.eval({"x": CASES}, params=params)["y"], expected)
    assert np.round(expected.ravel()).tolist() == [0, 1, 1, 0]
    grads = m.grad({"x": CASES, "target": np.array([[0], [1], [1], [0]])}, params=xor_run).grads
    assert set(grads) >= {"h.weight", "z.weight"}


def test_parameter_sources_that_do_not_fit_are_one_error(tmp_path):
    m = nnc.load(XOR)
    empty = tmp_path / "empty_run"
    empty.mkdir()
    with pytest.raises(NncError, match=f"the run folder {empty} has no checkpoint.npz"):
        m.eval({"x": CASES}, params=empty)
    with pytest.raises(NncError, match="params: got int, expected a run folder, a checkpoint .npz"):
        m.eval({"x": CASES}, params=3)
    with pytest.raises(NncError, match="unknown parameter 'w' for model 'xor'"):
        m.eval({"x": CASES}, params={"w": np.ones(2)})
    with pytest.raises(NncError, match=r"'z.bias' has shape \[2\], expected \[1\]"):
        m.eval({"x": CASES}, params={"z.bias": np.ones(2)}, random_params=True)
    result = run_main("eval", XOR, "--at", "x=[[0,1]]", "--params", empty)
    assert result.returncode == 1 and result.stderr.startswith(f"error: the run folder {empty} has no checkpoint.npz")
