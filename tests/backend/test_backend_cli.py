"""`nnc compile`: the summary, the fused kernel plan, vectorized LLVM IR and assembly, -o FILE."""

from __future__ import annotations

from conftest import EXAMPLES, run_main


def test_summary_reports_kernels_memory_and_time():
    done = run_main("compile", EXAMPLES / "mnist_mlp.nn", "--batch", "16")
    assert done.returncode == 0, done.stderr
    assert "kernels     5 for 10 primitive ops" in done.stdout
    assert "parameters  940,608 bytes" in done.stdout
    assert "arena" in done.stdout and "compile" in done.stdout and "B=16" in done.stdout


def test_graph_lists_each_kernel_with_its_nodes_and_lines():
    done = run_main("compile", EXAMPLES / "lenet5.nn", "--emit", "graph", "--batch", "2")
    assert done.returncode == 0, done.stderr
    assert "k0 conv2d" in done.stdout and "conv2d%4 add%6 relu%7  lines 5" in done.stdout


def test_llvm_and_asm_are_vectorized(tmp_path):
    out = tmp_path / "mlp.ll"
    done = run_main("compile", EXAMPLES / "mnist_mlp.nn", "--emit", "llvm", "-o", out)
    assert done.returncode == 0, done.stderr
    text = out.read_text()
    assert "@llvm.fma.v" in text and "x float>" in text
    done = run_main("compile", EXAMPLES / "mnist_mlp.nn", "--emit", "asm", "--batch", "8")
    assert "vfmadd" in done.stdout
