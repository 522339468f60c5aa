"""`--html FILE`: one self-contained page of the backward steps (SVGs inlined, no network needed).

Previous / next buttons (and the arrow keys) move through the frames; beside
each frame is its chain-rule product and the whole `nnc explain` text with
the current line marked. Opening the page with `#selftest` clicks through
every step and back and writes the verdict into `#selftest-result` (with the
scale the first diagram is drawn at: below about 0.6 its labels are too small
to read); script
errors and console errors are written into `#errors`, so a headless browser's
dumped DOM tells whether the page works.
"""

from __future__ import annotations

from pathlib import Path

from ..fileio import atomic_write
from .dot import escape
from .render import svg_text

STYLE = """
body { font-family: Helvetica, Arial, sans-serif; margin: 0; color: #222; }
header { display: flex; align-items: center; gap: 1em; padding: .6em 1em; background: #f3f5f8;
         border-bottom: 1px solid #d0d7de; position: sticky; top: 0; }
header h1 { font-size: 1.1em; margin: 0; flex: 1; }
button { font-size: 1em; padding: .3em .9em; }
section.frame { display: flex; gap: 1.5em; padding: 1em; align-items: flex-start; }
section.frame[hidden] { display: none; }
.diagram { flex: 3; overflow: auto; }
.diagram svg { max-width: 100%; height: auto; }
aside { flex: 2; min-width: 22em; }
aside .line { font-family: monospace; background: #fff8c5; padding: .5em; border-radius: 4px; }
pre.explain { font-size: .85em; white-space: pre-wrap; background: #f6f8fa; padding: .6em; border-radius: 4px; }
pre.explain mark { background: #ffe58a; }
#errors:empty, #selftest-result:empty { display: none; }
#errors { color: #b00020; white-space: pre-wrap; padding: 0 1em; }
"""

SCRIPT = """
(function () {
  var errorBox = document.getElementById('errors');
  var errorCount = 0;
  function report(text) {
    errorCount += 1;
    errorBox.setAttribute('data-count', String(errorCount));
    errorBox.textContent += text + '\\n';
  }
  window.onerror = function (message, source, line) { report('error: ' + message + ' (line ' + line + ')'); };
  var consoleError = console.error;
  console.error = function () {
    report('console.error: ' + Array.prototype.join.call(arguments, ' '));
    consoleError.apply(console, arguments);
  };
  var frames = document.querySelectorAll('section.frame');
  var prev = document.getElementById('prev');
  var next = document.getElementById('next');
  var counter = document.getElementById('counter');
  var current = 0;
  function show(i) {
    if (i < 0 || i >= frames.length) { return; }
    frames[current].hidden = true;
    current = i;
    frames[current].hidden = false;
    counter.textContent = 'step ' + (i + 1) + ' / ' + frames.length;
    prev.disabled = i === 0;
    next.disabled = i === frames.length - 1;
  }
  prev.addEventListener('click', function () { show(current - 1); });
  next.addEventListener('click', function () { show(current + 1); });
  document.addEventListener('keydown', function (event) {
    if (event.key === 'ArrowLeft') { show(current - 1); }
    if (event.key === 'ArrowRight') { show(current + 1); }
  });
  show(0);

  function visibleStep() {
    var visible = [];
    for (var k = 0; k < frames.length; k++) {
      if (!frames[k].hidden) { visible.push(frames[k].getAttribute('data-step')); }
    }
    return visible.length === 1 ? visible[0] : 'visible=' + visible.length;
  }
  function selftest() {
    var forward = [visibleStep()], backward = [];
    for (var k = 1; k < frames.length; k++) { next.click(); forward.push(visibleStep()); }
    next.click();
    var stays = visibleStep();
    backward.push(stays);
    for (var j = 1; j < frames.length; j++) { prev.click(); backward.push(visibleStep()); }
    var expected = [];
    for (var s = 1; s <= frames.length; s++) { expected.push(String(s)); }
    var ok = forward.join(',') === expected.join(',') &&
             backward.join(',') === expected.slice().reverse().join(',') && prev.disabled;
    var result = document.getElementById('selftest-result');
    var svg = frames[current].querySelector('.diagram svg');
    var scale = svg && svg.viewBox && svg.viewBox.baseVal && svg.viewBox.baseVal.width ?
      svg.getBoundingClientRect().width / svg.viewBox.baseVal.width : 1;
    result.textContent = (ok ? 'selftest ok: ' : 'selftest FAILED: ') + frames.length + ' steps; forward ' +
      forward.join(',') + '; backward ' + backward.join(',') + '; diagram scale ' + scale.toFixed(2);
    result.setAttribute('data-ok', ok ? 'yes' : 'no');
  }
  if (window.location.hash === '#selftest') { selftest(); }
})();
"""


def _explain_block(explain: str, line: str) -> str:
    out = []
    for text in explain.splitlines():
        piece = escape(text)
        out.append(f"<mark>{piece}</mark>" if text.strip() == line.strip() else piece)
    return "\n".join(out)


def page(title: str, frames, explain: str) -> str:
    sections = []
    for frame in frames:
        sections.append(
            f'<section class="frame" data-step="{frame.index}" hidden>\n'
            f'<div class="diagram">{svg_text(frame.dot)}</div>\n'
            f'<aside><h2>step {frame.index} of {len(frames)}: {escape(frame.name)}</h2>\n'
            f'<p class="line">{escape(frame.line)}</p>\n'
            f'<pre class="explain">{_explain_block(explain, frame.line)}</pre></aside>\n'
            f'</section>')
    return (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        f'<title>{escape(title)}</title>\n<style>{STYLE}</style>\n</head>\n<body>\n'
        f'<header><h1>{escape(title)}</h1>\n'
        '<button id="prev" type="button">&#9664; previous</button>\n<span id="counter"></span>\n'
        '<button id="next" type="button">next &#9654;</button></header>\n'
        '<div id="errors"></div>\n<div id="selftest-result"></div>\n<main>\n'
        + "\n".join(sections) +
        f'\n</main>\n<script>{SCRIPT}</script>\n</body>\n</html>\n')


def write_page(path: str | Path, title: str, frames, explain: str) -> None:
    text = page(title, frames, explain).encode("utf-8")
    atomic_write(Path(path), lambda f: f.write(text))
