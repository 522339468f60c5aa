"""`--html FILE`: one self-contained page of the backward steps (SVGs inlined, no network needed).

Previous / next buttons (and the arrow keys) move through the frames; beside
each frame is its chain-rule product and the whole `nnc explain` text with
the current line marked. In the layers view a click on a statement's box
expands it: its primitive ops, with the values and the gradients known at
that step, open beside the diagram and follow the steps until the box is
clicked again (`#expand=h1` opens the page with h1 expanded, `#step=3` at step 3,
`#step=3&expand=h1` both). Each distinct
expanded diagram is stored once, in a <template>.

Opening the page with `#selftest` clicks through every step and back, then
clicks the first expandable box, steps with it open and clicks it again, and
writes the verdict into `#selftest-result`: the scale and the place the first
diagram is drawn at (below about 0.6 its labels are too small to read; past
the window's edge, it needs scrolling), the smallest scale of any step's, and
the ops the click showed. Script
errors and console errors are written into `#errors`, so a headless browser's
dumped DOM tells whether the page works.
"""

from __future__ import annotations

import html
import json
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
.diagram svg { max-width: 100%; max-height: calc(100vh - 6em); height: auto; }
aside { flex: 2; min-width: 22em; }
aside .line { font-family: monospace; background: #fff8c5; padding: .5em; border-radius: 4px; }
pre.explain { font-size: .85em; white-space: pre-wrap; background: #f6f8fa; padding: .6em; border-radius: 4px; }
pre.explain mark { background: #ffe58a; }
#errors:empty, #selftest-result:empty { display: none; }
.diagram g.node.expandable { cursor: pointer; }
.diagram g.node.expandable:hover polygon, .diagram g.node.expandable:hover path { stroke-width: 2.5; }
.diagram g.node.expanded polygon, .diagram g.node.expanded path { stroke: #0b5cad; stroke-width: 3; }
section.frame.open .diagram, section.frame.open aside { flex: 1; }   /* room for the ops beside the layers */
#ops-panel { border: 1px solid #9aa7b8; border-radius: 4px; padding: .4em .6em; margin: .6em 0; }
#ops-panel[hidden] { display: none; }
#ops-panel h3 { font-size: 1em; margin: 0 0 .3em 0; }
#ops-panel svg { max-width: 100%; height: auto; }
aside .hint { color: #666; font-size: .85em; }
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
    renderPanel();
  }
  prev.addEventListener('click', function () { show(current - 1); });
  next.addEventListener('click', function () { show(current + 1); });
  document.addEventListener('keydown', function (event) {
    if (event.key === 'ArrowLeft') { show(current - 1); }
    if (event.key === 'ArrowRight') { show(current + 1); }
  });
  var panel = document.getElementById('ops-panel');
  var expanded = null;
  function opsOf(frame) { return JSON.parse(frame.getAttribute('data-ops') || '{}'); }
  function statementOf(node) {
    var title = node.querySelector('title');
    return title && title.textContent.indexOf('s:') === 0 ? title.textContent.slice(2) : null;
  }
  function renderPanel() {
    var frame = frames[current], ops = opsOf(frame);
    var boxes = frame.querySelectorAll('.diagram g.node.expandable');
    for (var k = 0; k < boxes.length; k++) {
      boxes[k].classList.toggle('expanded', statementOf(boxes[k]) === expanded);
    }
    var open = expanded !== null && ops.hasOwnProperty(expanded);
    for (var j = 0; j < frames.length; j++) { frames[j].classList.toggle('open', open && j === current); }
    if (!open) { panel.hidden = true; return; }
    var aside = frame.querySelector('aside');
    aside.insertBefore(panel, aside.querySelector('pre.explain'));
    panel.querySelector('h3').textContent = expanded + ': its ops at this step (click ' + expanded +
      ' again to fold it)';
    var body = panel.querySelector('.ops-diagram');
    body.innerHTML = '';
    body.appendChild(document.getElementById('ops-' + ops[expanded]).content.cloneNode(true));
    panel.hidden = false;
  }
  function expand(label) {
    expanded = expanded === label ? null : label;
    renderPanel();
  }
  for (var f = 0; f < frames.length; f++) {
    var ops = opsOf(frames[f]), nodes = frames[f].querySelectorAll('.diagram g.node');
    for (var k = 0; k < nodes.length; k++) {
      var label = statementOf(nodes[k]);
      if (label === null || !ops.hasOwnProperty(label)) { continue; }
      nodes[k].classList.add('expandable');
      nodes[k].addEventListener('click', expand.bind(null, label));
    }
  }
  show(0);

  function visibleStep() {
    var visible = [];
    for (var k = 0; k < frames.length; k++) {
      if (!frames[k].hidden) { visible.push(frames[k].getAttribute('data-step')); }
    }
    return visible.length === 1 ? visible[0] : 'visible=' + visible.length;
  }
  function shownOps() {
    var heads = [], nodes = panel.hidden ? [] : panel.querySelectorAll('g.node');
    for (var k = 0; k < nodes.length; k++) {
      var text = nodes[k].querySelector('text');
      if (text) { heads.push(text.textContent); }
    }
    return heads;
  }
  function scaleOf(svg) {   // the drawing keeps its proportions inside the element: the smaller of the two ratios
    var box = svg && svg.viewBox && svg.viewBox.baseVal, rect = svg && svg.getBoundingClientRect();
    return box && box.width && box.height ? Math.min(rect.width / box.width, rect.height / box.height) : 1;
  }
  function clickBox(label) {
    var boxes = frames[current].querySelectorAll('.diagram g.node.expandable');
    for (var k = 0; k < boxes.length; k++) {
      if (statementOf(boxes[k]) === label) { boxes[k].dispatchEvent(new MouseEvent('click', {bubbles: true})); }
    }
  }
  function expandTest() {
    var box = frames[current].querySelector('.diagram g.node.expandable');
    if (!box) { return {ok: true, text: 'no expandable box'}; }
    var label = statementOf(box);
    clickBox(label);
    var heads = shownOps(), inFrame = frames[current].contains(panel);
    var scale = scaleOf(panel.querySelector('svg'));
    var beside = scaleOf(frames[current].querySelector('.diagram svg'));
    next.click();
    var follows = !panel.hidden && frames[current].contains(panel);
    prev.click();
    clickBox(label);
    var folded = panel.hidden;
    return {ok: heads.length > 0 && inFrame && follows && folded,
            text: 'expanded ' + label + ' by a click: ' + heads.join(', ') + ' (scale ' + scale.toFixed(2) +
                  ', the diagram beside it ' + beside.toFixed(2) + ')' +
                  (follows ? '; it stays open on the next step' : '; it closed on the next step') +
                  (folded ? '; a second click folds it' : '; a second click left it open')};
  }
  function selftest() {
    var forward = [visibleStep()], backward = [];
    var smallest = scaleOf(frames[current].querySelector('.diagram svg')), at = 1;
    for (var k = 1; k < frames.length; k++) {
      next.click();
      forward.push(visibleStep());
      var scale = scaleOf(frames[current].querySelector('.diagram svg'));
      if (scale < smallest) { smallest = scale; at = current + 1; }
    }
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
    var box = svg.getBoundingClientRect();
    var place = Math.round(box.width) + 'x' + Math.round(box.height) + ' px, right ' + Math.round(box.right) +
      ' bottom ' + Math.round(box.bottom) + ' in a ' + window.innerWidth + 'x' + window.innerHeight + ' window';
    var expansion = expandTest();
    ok = ok && expansion.ok;
    result.textContent = (ok ? 'selftest ok: ' : 'selftest FAILED: ') + frames.length + ' steps; forward ' +
      forward.join(',') + '; backward ' + backward.join(',') + '; diagram scale ' + scaleOf(svg).toFixed(2) +
      ' (' + place + '), smallest ' + smallest.toFixed(2) + ' at step ' + at + '; ' + expansion.text;
    result.setAttribute('data-ok', ok ? 'yes' : 'no');
  }
  var hash = window.location.hash.slice(1).split('&');
  for (var h = 0; h < hash.length; h++) {
    if (hash[h].indexOf('expand=') === 0) { expand(decodeURIComponent(hash[h].slice(7))); }
    if (hash[h].indexOf('step=') === 0) { show(parseInt(hash[h].slice(5), 10) - 1); }
  }
  if (hash.indexOf('selftest') >= 0) { selftest(); }
})();
"""


def _explain_block(explain: str, line: str, numbers: str | None = None) -> str:
    out = []
    marked = {line.strip(), *([numbers.strip()] if numbers else [])}
    for text in explain.splitlines():
        piece = escape(text)
        out.append(f"<mark>{piece}</mark>" if text.strip() in marked else piece)
    return "\n".join(out)


def page(title: str, frames, explain: str) -> str:
    drawn: dict = {}   # DOT of an expanded box -> its template's number (most boxes look alike step after step)
    for frame in frames:
        for dot in frame.ops.values():
            drawn.setdefault(dot, len(drawn))
    templates = "".join(f'<template id="ops-{k}">{svg_text(dot)}</template>\n' for dot, k in drawn.items())
    sections = []
    for frame in frames:
        ops = html.escape(json.dumps({label: drawn[dot] for label, dot in frame.ops.items()}), quote=True)
        numbers = f'<p class="line">{escape(frame.numbers)}</p>\n' if frame.numbers else ""
        hint = '<p class="hint">click a box to see its ops</p>\n' if frame.ops else ""
        sections.append(
            f'<section class="frame" data-step="{frame.index}" data-ops="{ops}" hidden>\n'
            f'<div class="diagram">{svg_text(frame.dot)}</div>\n'
            f'<aside><h2>step {frame.index} of {len(frames)}: {escape(frame.name)}</h2>\n'
            f'<p class="line">{escape(frame.line)}</p>\n{numbers}{hint}'
            f'<pre class="explain">{_explain_block(explain, frame.line, frame.numbers)}</pre></aside>\n'
            f'</section>')
    return (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        f'<title>{escape(title)}</title>\n<style>{STYLE}</style>\n</head>\n<body>\n'
        f'<header><h1>{escape(title)}</h1>\n'
        '<button id="prev" type="button">&#9664; previous</button>\n<span id="counter"></span>\n'
        '<button id="next" type="button">next &#9654;</button></header>\n'
        '<div id="errors"></div>\n<div id="selftest-result"></div>\n<main>\n'
        + "\n".join(sections) +
        '\n</main>\n<div id="ops-panel" hidden><h3></h3><div class="ops-diagram"></div></div>\n'
        f'{templates}<script>{SCRIPT}</script>\n</body>\n</html>\n')


def write_page(path: str | Path, title: str, frames, explain: str) -> None:
    text = page(title, frames, explain).encode("utf-8")
    atomic_write(Path(path), lambda f: f.write(text))
