"""Models from PyTorch: an MLP, LeNet-5 and a small ResNet (two residual blocks with batch norm) exported with
torch.onnx.export (the TorchScript exporter, `dynamo=False`: the dynamo one needs onnxscript), imported by nnc, and
their outputs (evaluation form) and gradients (the training form: a cross-entropy loss, `--loss cross_entropy`,
with respect to every parameter and the input) compared with PyTorch's within 1e-4 relative."""

from __future__ import annotations

import re
import warnings

import numpy as np
import pytest

import nnc

torch = pytest.importorskip("torch")
pytest.importorskip("onnx")
nn, F = torch.nn, torch.nn.functional


class MLP(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1, self.fc2, self.fc3 = nn.Linear(20, 32), nn.Linear(32, 16), nn.Linear(16, 5)

    def forward(self, x):
        return self.fc3(torch.tanh(self.fc2(F.relu(self.fc1(x)))))


class LeNet5(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1, self.conv2 = nn.Conv2d(1, 6, 5, padding=2), nn.Conv2d(6, 16, 5)
        self.fc1, self.fc2, self.fc3 = nn.Linear(400, 120), nn.Linear(120, 84), nn.Linear(84, 10)

    def forward(self, x):
        x = F.max_pool2d(F.relu(self.conv1(x)), 2)
        x = F.avg_pool2d(F.relu(self.conv2(x)), 2)
        x = x.view(x.size(0), -1)            # Shape, Gather, Unsqueeze, Concat: folded to [B, 400]
        return self.fc3(F.relu(self.fc2(F.relu(self.fc1(x)))))


class Block(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.conv1, self.bn1 = nn.Conv2d(c, c, 3, padding=1, bias=False), nn.BatchNorm2d(c)
        self.conv2, self.bn2 = nn.Conv2d(c, c, 3, padding=1, bias=False), nn.BatchNorm2d(c)

    def forward(self, x):
        return F.relu(x + self.bn2(self.conv2(F.relu(self.bn1(self.conv1(x))))))


class ResNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 3, padding=1, stride=2)
        self.layer1 = nn.Sequential(Block(8), Block(8))
        self.fc = nn.Linear(8, 10)

    def forward(self, x):
        x = self.layer1(F.relu(self.stem(x)))
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))


class Recurrent(nn.Module):
    """nn.LSTM / GRU / RNN (ONNX's LSTM, GRU, RNN operators, gates reordered on import): the last step of the
    sequence of outputs (ONNX's Y), or the last hidden state (Y_h)."""

    def __init__(self, kind, bidirectional=False, last_state=False):
        super().__init__()
        self.rnn = getattr(nn, kind)(6, 8, batch_first=True, bidirectional=bidirectional)
        self.fc = nn.Linear(16 if bidirectional else 8, 5)
        self.last_state = last_state

    def forward(self, x):
        out, h = self.rnn(x)
        if self.last_state:
            h = h[0] if isinstance(h, tuple) else h
            return self.fc(torch.cat(list(h), dim=1))
        return self.fc(out[:, -1])


CASES = {"mlp": (MLP, (20,)), "lenet5": (LeNet5, (1, 28, 28)), "resnet": (ResNet, (3, 16, 16)),
         "lstm": (lambda: Recurrent("LSTM"), (7, 6)), "lstm_bi": (lambda: Recurrent("LSTM", True), (7, 6)),
         "gru_last": (lambda: Recurrent("GRU", last_state=True), (7, 6)),
         "gru_bi_last": (lambda: Recurrent("GRU", True, last_state=True), (7, 6)),
         "rnn": (lambda: Recurrent("RNN", True), (7, 6))}


def exported(tmp_path, name):
    cls, shape = CASES[name]
    torch.manual_seed(0)
    model = cls()
    for m in model.modules():   # batch norm with statistics that are not the identity
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)
            m.weight.data.uniform_(0.5, 1.5)
            m.bias.data.uniform_(-0.5, 0.5)
    model.eval()
    path = tmp_path / f"{name}.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model, (torch.randn(2, *shape),), str(path), input_names=["x"], output_names=["logits"],
                          dynamic_axes={"x": {0: "batch"}, "logits": {0: "batch"}}, dynamo=False,
                          do_constant_folding=name != "resnet")   # resnet: batch norm a node of its own
    return model, path, shape


def torch_name(name: str) -> tuple[str, bool]:
    """nnc's parameter name as PyTorch's, and whether nnc holds it transposed (a dense weight)."""
    layer, suffix = name.rsplit(".", 1)
    layer = re.sub(r"_(\d+)(?=\.|$)", r".\1", layer)   # layer1_0.conv1 -> layer1.0.conv1
    return f"{layer}.{ {'gamma': 'weight', 'beta': 'bias'}.get(suffix, suffix)}", suffix == "weight"


def recurrent_name(name: str) -> tuple[str, bool]:
    """An imported recurrent layer's parameter (PyTorch's exporter renames them: onnx::LSTM_123) as PyTorch's."""
    reverse = ".reverse." in name
    suffix = name.rsplit(".", 1)[1]
    return f"rnn.{suffix}_l0" + ("_reverse" if reverse else ""), suffix.startswith("weight")


def pytorch_name(name: str) -> tuple[str, bool]:
    return recurrent_name(name) if name.rsplit(".", 1)[1] in ("weight_ih", "weight_hh", "bias_ih", "bias_hh") \
        else torch_name(name)


@pytest.mark.parametrize("name", list(CASES))
def test_outputs_equal_pytorch(tmp_path, name):
    model, path, shape = exported(tmp_path, name)
    x = np.random.default_rng(1).normal(size=(5, *shape)).astype(np.float32)
    m = nnc.load(path)
    got = m.eval({"x": x})["logits"]
    with torch.no_grad():
        want = model(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)
    state = model.state_dict()
    for p, value in m.file_params.items():   # every parameter is PyTorch's, under a name that says which
        tn, dense = pytorch_name(p)
        expected = state[tn].numpy()
        np.testing.assert_array_equal(value, expected.T if dense and value.ndim == 2 else expected, err_msg=p)


@pytest.mark.parametrize("name", list(CASES))
def test_gradients_equal_pytorch(tmp_path, name):
    model, path, shape = exported(tmp_path, name)
    rng = np.random.default_rng(2)
    x = rng.normal(size=(4, *shape)).astype(np.float32)
    label = rng.integers(0, 5, 4).astype(np.int32)
    m = nnc.model.load_onnx(path, loss="cross_entropy")
    grads = m.grad({"x": x, "label": label})
    model.train()   # nnc's training form: batch norm normalizes with the batch's statistics
    tx = torch.from_numpy(x).requires_grad_(True)
    loss = F.cross_entropy(model(tx), torch.from_numpy(label).long())
    loss.backward()
    np.testing.assert_allclose(grads.value, loss.item(), rtol=1e-4)
    np.testing.assert_allclose(grads.grads["x"], tx.grad.numpy(), rtol=1e-4, atol=1e-6)
    params = dict(model.named_parameters())
    trained = [p for p in grads.grads if p != "x"]
    assert len(trained) == len(params)
    for p in trained:
        tn, dense = pytorch_name(p)
        want = params[tn].grad.numpy()
        np.testing.assert_allclose(grads.grads[p], want.T if dense and want.ndim == 2 else want, rtol=1e-4,
                                   atol=1e-6, err_msg=p)
