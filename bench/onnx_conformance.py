"""ONNX operator conformance: nnc as an ONNX backend over every node test of the installed onnx package.

The node tests (1,884 in onnx 1.23) are generated in memory by `onnx.backend.test.case.node` when the runner
loads them (about 10 s; nothing to download or keep on disk), and run through `onnx.backend.test.BackendTest`
with `nnc.onnx.backend.onnx_backend()` on the CPU. A test nnc cannot run (an operator it does not import, a
dtype it has not) is a skip with its reason; a wrong number is a failure; an exception is an error.

    .venv/bin/python bench/onnx_conformance.py                 # totals and the operators covered
    .venv/bin/python bench/onnx_conformance.py -k reduce       # only the tests whose name matches
    .venv/bin/python bench/onnx_conformance.py --list          # every test with its outcome (and reason)
    .venv/bin/python bench/onnx_conformance.py --json out.json # the outcomes, for docs/onnx.md's figures
"""

from __future__ import annotations

import argparse
import collections
import io
import json
import re
import sys
import time
import unittest
import warnings

NODE_CASE = "OnnxBackendNodeModelTest"


class Outcomes(unittest.TestResult):
    """Each test's outcome: passed, failed, skipped (with the reason) or errored (with the exception)."""

    def __init__(self):
        super().__init__()
        self.outcome: dict[str, tuple[str, str]] = {}

    def addSuccess(self, test):
        self.outcome[test._testMethodName] = ("passed", "")

    def addFailure(self, test, err):
        self.outcome[test._testMethodName] = ("failed", str(err[1]).strip().splitlines()[0][:200])

    def addError(self, test, err):
        self.outcome[test._testMethodName] = ("errored", f"{err[0].__name__}: {str(err[1])[:200]}")

    def addSkip(self, test, reason):
        self.outcome[test._testMethodName] = ("skipped", reason)


def node_tests(pattern: str | None = None, names=None):
    """The node tests on the CPU (ONNX's runner adds a `_cuda` twin of each, which nnc skips): a TestSuite of
    those whose name matches `pattern`, or of the `names` given (`test_abs_cpu`)."""
    from onnx.backend.test import BackendTest

    from nnc.onnx.backend import onnx_backend

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")   # the generators divide by zero on purpose (ReduceMin of an empty set)
        case = BackendTest(onnx_backend(), __name__).test_cases[NODE_CASE]
    every = sorted(n for n in dir(case) if n.startswith("test_") and n.endswith("_cpu"))
    if names is not None:
        unknown = set(names) - set(every)
        if unknown:
            raise ValueError(f"no such node tests: {sorted(unknown)}")
        every = sorted(names)
    if pattern:
        every = [n for n in every if re.search(pattern, n)]
    return unittest.TestSuite(case(n) for n in every)


def operators_by_test() -> dict:
    """Each node test's operator (the op type of its single node; the expanded tests name their function)."""
    from onnx.backend.test.loader import load_model_tests

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        cases = load_model_tests(kind="node")
    out = {}
    for c in cases:
        types = [n.op_type for n in c.model.graph.node]
        out[c.name + "_cpu"] = types[0] if len(set(types)) == 1 else "(expanded)" if "expanded" in c.name else "+".join(
            dict.fromkeys(types))
    return out


def run(pattern: str | None = None, names=None) -> dict:
    """Run the node tests (all, or those `node_tests` selects): totals, the operators covered, each outcome."""
    suite = node_tests(pattern, names)
    result = Outcomes()
    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        stdout, sys.stdout = sys.stdout, io.StringIO()   # the runner prints retries and verbose skips
        try:
            suite.run(result)
        finally:
            sys.stdout = stdout
    seconds = time.perf_counter() - start
    totals = collections.Counter(kind for kind, _ in result.outcome.values())
    by_test = operators_by_test()
    covered = sorted({by_test.get(t, "?") for t, (kind, _) in result.outcome.items()
                      if kind == "passed" and not by_test.get(t, "?").startswith("(")})
    return {"tests": len(result.outcome), "passed": totals["passed"], "failed": totals["failed"],
            "skipped": totals["skipped"], "errored": totals["errored"], "seconds": round(seconds, 1),
            "operators": covered, "outcomes": {t: list(v) for t, v in sorted(result.outcome.items())}}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("-k", dest="pattern", help="only the tests whose name matches this regular expression")
    ap.add_argument("--list", action="store_true", help="print every test's outcome")
    ap.add_argument("--json", help="write the totals, operators and outcomes to this file")
    args = ap.parse_args(argv)
    report = run(args.pattern)
    if args.list:
        for test, (kind, why) in report["outcomes"].items():
            print(f"{kind:8} {test}  {why}")
    print(f"ONNX node tests: {report['tests']}: {report['passed']} passed, {report['failed']} failed, "
          f"{report['skipped']} skipped, {report['errored']} errored ({report['seconds']} s)")
    print(f"operators covered ({len(report['operators'])}): {', '.join(report['operators'])}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(report, f, indent=1)
    return 1 if report["errored"] else 0


if __name__ == "__main__":
    sys.exit(main())
