"""Data augmentation (`augment = [flip, crop(pad=4)]`, --augment) and test-time augmentation (`tta`, --tta):
the specs, what each transform does to a batch, that the draws follow the seed and the step (a resumed run
augments as an uninterrupted one), that evaluation never sees them, the TTA average, and the errors."""

from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import run_main

import nnc
from nnc.errors import NncError
from nnc.passes.optim import LR
from nnc.specs import AUGMENTATIONS, TTA, Spec, parse_specs
from nnc.train import runfolder
from nnc.train.augment import AUGMENT_STREAM, Augmenter, evaluate_tta, resampling, translate
from nnc.train.config import run_config
from nnc.train.engines import NativeEngine, ReferenceEngine
from nnc.train.evaluator import Evaluator
from nnc.train.fit import Loop
from nnc.train.trainer import Trainer

TINY = """model tiny {
  input  image: [B, 1, 8, 8]
  input  label: int[B]
  logits = dense(flatten(image), 3)
  output logits
  loss   cross_entropy(logits, label)
}
"""
MLP = """model mlp {
  input  x: [B, 64]
  input  label: int[B]
  logits = dense(x, 3)
  output logits
  loss   cross_entropy(logits, label)
}
"""


def image_data(tmp_path, n=96, seed=0):
    """Images whose class is where their bright square is (left, middle, right), with a test part."""
    rng = np.random.default_rng(seed)
    parts = {}
    for suffix, count in (("", n), ("_test", n // 2)):
        label = rng.integers(0, 3, count)
        image = rng.uniform(0, 0.3, (count, 1, 8, 8)).astype(np.float32)
        for i, c in enumerate(label):
            image[i, 0, 3:5, 1 + 2 * c:3 + 2 * c] += 1
        parts[f"image{suffix}"], parts[f"label{suffix}"] = image, label.astype(np.int64)
    path = tmp_path / "images.npz"
    np.savez(path, **parts)
    return path


def bound(model, path, val=0.0):
    from nnc.data import load_for_model

    return load_for_model(model, data=str(path), val=val, seed=0)


def _task(model):
    from nnc.runtime.task import training_task

    return training_task(model.graph)


def augmenter(specs, source=TINY):
    model = nnc.loads(source, "m.nn")
    return Augmenter(model.graph, _task(model), specs)


def batch_of(n=32, shape=(1, 8, 8), seed=1):
    return {"image": np.random.default_rng(seed).uniform(0.1, 1, (n, *shape)).astype(np.float32),
            "label": np.zeros(n, np.int64)}


# ---- the specs ---------------------------------------------------------------------------------------------


def test_the_flag_and_the_train_block_read_the_same_augmentations():
    block = nnc.loads(TINY + "train {\n  augment = [flip, crop(pad=2), scale(max=1.2)]\n  tta = [flip, crops(1)]\n}\n",
                      "m.nn").settings
    flag = parse_specs("flip,crop(pad=2),scale(max=1.2)", AUGMENTATIONS, "augmentation")
    assert block["augment"] == flag == (Spec("flip", {"p": 0.5}), Spec("crop", {"pad": 2}),
                                        Spec("scale", {"min": 0.9, "max": 1.2}))
    assert block["tta"] == parse_specs("flip,crops(pad=1)", TTA, "test-time augmentation")
    assert parse_specs("none", AUGMENTATIONS, "augmentation") == ()
    config = run_config(nnc.loads(TINY, "m.nn").settings, augment=flag)
    assert runfolder.config_of(runfolder.config_settings(config)) == config   # settings.json round trip


# ---- what each transform does ------------------------------------------------------------------------------


def test_the_same_seed_gives_the_same_batch_and_another_step_another():
    aug = augmenter((Spec("flip", {"p": 0.5}), Spec("crop", {"pad": 2}), Spec("noise", {"std": 0.1})))
    first, again, next_step = batch_of(), batch_of(), batch_of()
    aug(first, 7)
    aug(again, 7)
    aug(next_step, 8)
    np.testing.assert_array_equal(first["image"], again["image"])
    assert not np.array_equal(first["image"], next_step["image"])
    assert not np.array_equal(first["image"], batch_of()["image"])
    np.testing.assert_array_equal(first["label"], batch_of()["label"])   # only the image input changes


@pytest.mark.parametrize("shape", [(1, 8, 8), (8, 8), (3, 8, 8)])
def test_a_flipped_batch_is_the_mirror_of_the_rows_the_mask_chose(shape):
    source = TINY.replace("[B, 1, 8, 8]", f"[B, {', '.join(map(str, shape))}]")
    aug = augmenter((Spec("flip", {"p": 0.5}),), source)
    batch, rows = batch_of(shape=shape), batch_of(shape=shape)["image"]
    aug(batch, 123)
    chosen = np.random.default_rng([123, AUGMENT_STREAM]).random(len(rows)) < 0.5
    assert 0 < chosen.sum() < len(rows)
    np.testing.assert_array_equal(batch["image"][chosen], rows[chosen][..., ::-1])
    np.testing.assert_array_equal(batch["image"][~chosen], rows[~chosen])


def shift_of(out: np.ndarray, image: np.ndarray, pad: int, edge: bool):
    """The (dy, dx) within the pad that moves `image` [C, H, W] to `out`, or None."""
    for dy in range(-pad, pad + 1):
        for dx in range(-pad, pad + 1):
            moved = translate(image[None], np.array([dy]), np.array([dx]), edge)[0]
            if np.array_equal(moved, out):
                return dy, dx
    return None


@pytest.mark.parametrize("name, edge", [("crop", False), ("shift", True)])
def test_crops_and_shifts_move_each_image_within_the_pad(name, edge):
    pad = 2
    aug = augmenter((Spec(name, {"pad" if name == "crop" else "max": pad}),))
    batch, rows = batch_of(64), batch_of(64)["image"]
    aug(batch, 5)
    shifts = [shift_of(o, r, pad, edge) for o, r in zip(batch["image"], rows)]
    assert None not in shifts
    assert len(set(shifts)) > 10                              # the offsets vary from image to image
    assert {d for s in shifts for d in s} == set(range(-pad, pad + 1))


def test_a_crop_fills_with_zeros_and_a_shift_with_the_edge():
    x = np.arange(16, dtype=np.float32).reshape(1, 1, 4, 4)
    down_left = translate(x, np.array([1]), np.array([-1]), edge=False)[0, 0]
    np.testing.assert_array_equal(down_left, [[0, 0, 0, 0], [1, 2, 3, 0], [5, 6, 7, 0], [9, 10, 11, 0]])
    edged = translate(x, np.array([1]), np.array([-1]), edge=True)[0, 0]
    np.testing.assert_array_equal(edged, [[1, 2, 3, 3], [1, 2, 3, 3], [5, 6, 7, 7], [9, 10, 11, 11]])


def test_scale_resamples_as_pytorch_grid_sample():
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(0)
    x = rng.standard_normal((4, 3, 9, 7)).astype(np.float32)
    factors = np.array([0.8, 1.0, 1.1, 1.5])
    out = resampling(9, factors, np.float32)[:, None] @ x @ resampling(7, factors, np.float32)[:, None].transpose(
        0, 1, 3, 2)
    theta = torch.zeros(4, 2, 3, dtype=torch.float64)
    theta[:, 0, 0] = theta[:, 1, 1] = torch.tensor(1 / factors)
    grid = torch.nn.functional.affine_grid(theta, (4, 3, 9, 7), align_corners=False)
    expected = torch.nn.functional.grid_sample(torch.tensor(x, dtype=torch.float64), grid, mode="bilinear",
                                               padding_mode="zeros", align_corners=False).numpy()
    np.testing.assert_allclose(out, expected, atol=1e-5)
    np.testing.assert_allclose(out[1], x[1], atol=1e-6)   # a factor of 1 leaves the image as it is


def test_noise_has_the_standard_deviation_asked_for():
    aug = augmenter((Spec("noise", {"std": 0.2}),))
    batch, rows = batch_of(256), batch_of(256)["image"]
    aug(batch, 3)
    assert np.std(batch["image"] - rows) == pytest.approx(0.2, rel=0.03)


# ---- the engines' hook and the trainer ---------------------------------------------------------------------


@pytest.mark.parametrize("engine_class", [NativeEngine, ReferenceEngine])
def test_the_engine_steps_on_the_augmented_rows(engine_class, tmp_path):
    model = nnc.loads(TINY, "m.nn")
    data = bound(model, image_data(tmp_path))
    aug = Augmenter(model.graph, _task(model), (Spec("flip", {"p": 0.5}), Spec("crop", {"pad": 1})))
    config = run_config(model.settings, batch=16, augment=aug.specs)
    graph = Trainer(model, config).step_graph
    eng = engine_class(graph, 16, [graph.loss], transform=aug)
    idx = np.arange(16, 32)
    _, batch = eng.run_batch(data.train, idx, {LR: np.array(0.01, np.float32)}, seed=42)
    expected = {k: v[idx] for k, v in data.train.items()}
    aug(expected, 42)
    assert batch.keys() == expected.keys() | {LR}
    np.testing.assert_array_equal(batch["image"], expected["image"])
    assert not np.array_equal(batch["image"], data.train["image"][idx])


def train(model, data, specs, epochs=2, backend="llvm", seed=0):
    trainer = Trainer(model, run_config(model.settings, epochs=epochs, batch=16, lr=0.05, optimizer="sgd",
                                        seed=seed, backend=backend, augment=specs))
    Loop(trainer, data).run()
    return trainer


def test_training_on_augmented_batches_is_reproducible_and_differs_from_plain(tmp_path):
    model = nnc.loads(TINY, "m.nn")
    data = bound(model, image_data(tmp_path))
    specs = (Spec("flip", {"p": 0.5}), Spec("crop", {"pad": 2}))
    a, b, plain = train(model, data, specs), train(model, data, specs), train(model, data, ())
    assert [h.train_loss for h in a.history] == [h.train_loss for h in b.history]
    for name, value in a.state().items():
        np.testing.assert_array_equal(value, b.state()[name])
    assert [h.train_loss for h in a.history] != [h.train_loss for h in plain.history]
    native = train(model, data, specs)
    reference = train(model, data, specs, backend="reference")
    np.testing.assert_allclose([h.train_loss for h in reference.history], [h.train_loss for h in native.history],
                               rtol=1e-4)


def test_validation_and_test_data_are_never_augmented(tmp_path, monkeypatch):
    model = nnc.loads(TINY, "m.nn")
    data = bound(model, image_data(tmp_path), val=32)
    calls = []
    original = Augmenter.__call__
    monkeypatch.setattr(Augmenter, "__call__", lambda self, batch, seed: (calls.append(len(batch["image"])),
                                                                           original(self, batch, seed)))
    specs = (Spec("flip", {"p": 1.0}), Spec("noise", {"std": 0.5}))
    augmented, plain = train(model, data, specs), train(model, data, ())
    assert calls == [16] * (2 * (len(data.train["image"]) // 16))   # one call per training step, nothing else
    plain.load_state(augmented.state())
    for part in (data.val, data.test):
        assert augmented.evaluate(part, detailed=True)["loss"] == plain.evaluate(part, detailed=True)["loss"]
    np.testing.assert_array_equal(augmented.predict(data.test)[1], plain.predict(data.test)[1])
    assert len(calls) == 2 * (len(data.train["image"]) // 16)


def test_a_run_resumed_mid_epoch_augments_as_an_uninterrupted_one(tmp_path):
    model = nnc.loads(TINY, "m.nn")
    data = bound(model, image_data(tmp_path))
    specs = (Spec("flip", {"p": 0.5}), Spec("crop", {"pad": 2}), Spec("scale", {"min": 0.8, "max": 1.2}))
    whole = train(model, data, specs, epochs=3)
    config = whole.config
    first = Trainer(model, config)
    steps = iter(range(1000))
    outcome = Loop(first, data, tmp_path).run(lambda: next(steps) == 8)   # stops in the second epoch
    assert outcome.status == "interrupted"
    resumed = Trainer(model, config)
    resume_at, watch = runfolder.restore(resumed, tmp_path, runfolder.saved_checkpoint(tmp_path))
    assert resume_at.step == 3 and resumed.epoch == 1
    Loop(resumed, data, tmp_path, watch=watch, resume_at=resume_at).run()
    for name, value in whole.state().items():
        np.testing.assert_array_equal(resumed.state()[name], value)


# ---- test-time augmentation ---------------------------------------------------------------------------------


def softmax(z):
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def test_tta_averages_the_probabilities_of_the_views_as_by_hand(tmp_path):
    model = nnc.loads(TINY, "m.nn")
    data = bound(model, image_data(tmp_path))
    params = model.init_params(seed=3)
    images, labels = data.test["image"], data.test["label"]

    def probs(x):
        return softmax(np.asarray(model.eval({"image": x, "label": labels}, params)["logits"], np.float64))

    padded = np.pad(images, ((0, 0), (0, 0), (1, 1), (1, 1)))
    crops = [images] + [padded[:, :, y:y + 8, x:x + 8] for y in (0, 2) for x in (0, 2)]
    views = [v for c in crops for v in (c, c[..., ::-1])]
    mean = np.mean([probs(v) for v in views], axis=0)
    result = evaluate_tta(Evaluator(model, "llvm", params), data.test,
                          parse_specs("crops(pad=1),flip", TTA, "test-time augmentation"), detailed=True)
    assert result["tta"]["views"] == 10
    assert result["accuracy"] == np.mean(mean.argmax(axis=1) == labels)
    assert result["loss"] == pytest.approx(-np.mean(np.log(mean[np.arange(len(labels)), labels])), rel=1e-5)
    assert result["tta"]["original_accuracy"] == np.mean(probs(images).argmax(axis=1) == labels)
    assert result["confusion"].sum() == len(labels)
    flip = evaluate_tta(Evaluator(model, "llvm", params), data.test, (Spec("flip", {}),))
    two = (probs(images) + probs(images[..., ::-1])) / 2
    assert flip["loss"] == pytest.approx(-np.mean(np.log(two[np.arange(len(labels)), labels])), rel=1e-5)


def test_nnc_run_and_eval_report_the_tta_result(tmp_path):
    path = image_data(tmp_path)
    (tmp_path / "tiny.nn").write_text(TINY + f'train {{\n  data = "{path.name}"\n  batch = 16\n  epochs = 2\n'
                                      "  optimizer = sgd(lr=0.05)\n  augment = [flip, crop(pad=1)]\n}\n")
    run = run_main("run", "tiny.nn", "--tta", "flip", "--out", "r", cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    assert "augment flip(p=0.5),crop(pad=1)" in run.stdout
    line = next(s for s in run.stdout.splitlines() if s.startswith("test-time augmentation flip"))
    assert "averaged over 2 views" in line
    metrics = json.loads((tmp_path / "r" / "metrics.json").read_text())
    assert metrics["tta"]["views"] == 2 and metrics["settings"]["tta"] == [{"name": "flip", "args": {}}]
    assert metrics["settings"]["augment"][1] == {"name": "crop", "args": {"pad": 1}}
    scored = run_main("eval", "tiny.nn", "--params", "r", "--data", path.name, "--tta", "flip", cwd=tmp_path)
    assert scored.returncode == 0, scored.stderr
    accuracy = next(s for s in run.stdout.splitlines() if s.startswith("test loss"))
    assert accuracy in scored.stdout and line in scored.stdout
    plain = run_main("eval", "tiny.nn", "--params", "r", "--data", path.name, cwd=tmp_path)
    assert "test-time" not in plain.stdout
    resumed = run_main("run", "tiny.nn", "--resume", "r", "--epochs", "3", "--augment", "flip", cwd=tmp_path)
    assert resumed.returncode == 1
    assert "--augment flip(p=0.5) contradicts the run being resumed (augment flip(p=0.5),crop(pad=1))" in \
        resumed.stderr


# ---- errors --------------------------------------------------------------------------------------------------


def test_augmenting_a_model_without_an_image_input_is_a_located_error():
    with pytest.raises(NncError) as err:
        nnc.loads(MLP + "train {\n  augment = [flip, crop(pad=4)]\n}\n", "mlp.nn")
    text = err.value.format()
    assert "mlp.nn:9:13: error: augment: model 'mlp' has no image input: got x [B, 64], label int[B], expected an " \
           "input [B, H, W] or [B, C, H, W] of floats" in text
    assert "hint: augmentation transforms images" in text
    with pytest.raises(NncError, match="tta: model 'mlp' has no image input"):
        nnc.loads(MLP + "train {\n  tta = flip\n}\n", "mlp.nn")
    model = nnc.loads(MLP, "mlp.nn")
    with pytest.raises(NncError, match="augment: model 'mlp' has no image input"):
        Trainer(model, run_config(model.settings, augment=(Spec("flip", {"p": 0.5}),)))


def test_the_command_line_refuses_augmentation_of_non_image_data(tmp_path):
    rng = np.random.default_rng(0)
    np.savez(tmp_path / "t.npz", x=rng.standard_normal((32, 64)).astype(np.float32), label=rng.integers(0, 3, 32))
    (tmp_path / "mlp.nn").write_text(MLP)
    result = run_main("run", "mlp.nn", "--data", "t.npz", "--augment", "flip", cwd=tmp_path)
    assert result.returncode == 1
    assert "error: augment: model 'mlp' has no image input: got x [B, 64]" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize("block, message, hint", [
    ("augment = [flip, crp(pad=4)]", "m.nn:9:20: error: unknown augmentation 'crp'", "did you mean 'crop'?"),
    ("augment = [flip, crop(pd=4)]", "m.nn:9:25: error: crop: unknown argument 'pd'", "did you mean 'pad'?"),
    ("augment = crop(pad=1.5)", "m.nn:9:22: error: crop: pad must be a whole number of pixels, 0 or more, got 1.5",
     None),
    ("augment = flip(p=2)", "m.nn:9:20: error: flip: p must be a probability from 0 to 1, got 2", None),
    ("augment = scale(min=1.2)", "m.nn:9:13: error: augment: scale: min must be at most max, got min=1.2, max=1.1",
     None),
    ("augment = [flip, flip]", "m.nn:9:20: error: augment: flip given twice", None),
    ("augment = [flip, 3]", "m.nn:9:20: error: augment must be a name or a list of names and calls", None),
    ("tta = [flip, crop]", "m.nn:9:16: error: unknown test-time augmentation 'crop'", "did you mean 'crops'?"),
])
def test_train_block_mistakes_are_located(block, message, hint):
    with pytest.raises(NncError) as err:
        nnc.loads(TINY + "train {\n  " + block + "\n}\n", "m.nn")
    text = err.value.format()
    assert message in text
    assert hint is None or f"hint: {hint}" in text


@pytest.mark.parametrize("flag, value, message", [
    ("--augment", "flp,crop", "argument --augment: unknown augmentation 'flp'\nhint: did you mean 'flip'?"),
    ("--augment", "crop(pad=2", "argument --augment: cannot read 'crop(pad=2', expected names and calls separated "
                                "by commas, such as flip(p=0.5),crop(pad=4)"),
    ("--augment", "shift(max=-1)", "argument --augment: shift: max must be a whole number of pixels, 0 or more"),
    ("--tta", "flip,crops(pad=2,3)", "argument --tta: crops: too many arguments: got '3', expected at most 1 (pad)"),
    ("--tta", "mirror", "argument --tta: unknown test-time augmentation 'mirror'"),
])
def test_flag_mistakes_are_usage_errors(tmp_path, flag, value, message):
    (tmp_path / "tiny.nn").write_text(TINY)
    result = run_main("run", "tiny.nn", flag, value, cwd=tmp_path)
    assert result.returncode == 2
    assert message in result.stderr


def test_tta_needs_a_classifier(tmp_path):
    source = TINY.replace("input  label: int[B]", "input  y: [B, 3]").replace("cross_entropy(logits, label)",
                                                                            "mse(logits, y)")
    model = nnc.loads(source, "r.nn")
    with pytest.raises(NncError, match="tta averages a classifier's class probabilities, but model 'tiny' is a "
                                       "regression"):
        Trainer(model, run_config(model.settings, tta=(Spec("flip", {}),)))


def test_the_documented_tables_are_the_code():
    from test_docs import call_form, table_rows

    for kind, table in (("augmentations", AUGMENTATIONS), ("tta", TTA)):
        rows = table_rows(kind)
        assert sorted(rows) == sorted(table)
        for name, args in table.items():
            assert rows[name] == call_form(name, args)


def test_the_target_of_an_autoencoder_is_not_augmented():
    model = nnc.loads("""model ae {
  input x: [B, 1, 8, 8]
  h = dense(flatten(x), 4)
  r = reshape(dense(h, 64), [B, 1, 8, 8])
  output r
  loss mse(r, x)
}
""", "ae.nn")
    with pytest.raises(NncError, match="augment: the only image input of model 'ae' is x, the target its loss"):
        Trainer(model, run_config(model.settings, augment=(Spec("flip", {"p": 0.5}),)))


def test_crops_and_shifts_must_be_smaller_than_the_image():
    model = nnc.loads(TINY, "m.nn")
    with pytest.raises(NncError, match=r"augment: shift moves the image by up to 8 pixels: got shift\(max=8\), "
                                       "expected fewer than the 8 x 8 pixels of image"):
        Trainer(model, run_config(model.settings, augment=(Spec("shift", {"max": 8}),)))
    with pytest.raises(NncError, match="tta: crops moves the image by up to 9 pixels"):
        Trainer(model, run_config(model.settings, tta=(Spec("crops", {"pad": 9}),)))
