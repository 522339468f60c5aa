"""`nnc viz`: diagrams of a model (nnc.viz) with values and gradients on the edges, step-by-step frames and
page of the backward pass, and with --heat the gradient norms a run recorded."""

from __future__ import annotations

from pathlib import Path

from ..errors import NncError
from .options import gather_inputs, gather_params, gather_random, load_model, model_options, value_options

VIEW_NAMES = ("layers", "ops", "backward", "fused")


def add_parser(sub) -> None:
    p = sub.add_parser("viz", help="draw the model: layers, ops, backward pass or fused kernels, with values "
                       "and gradients on the edges")
    model_options(p, optional=True)  # with --heat the run folder names its model
    value_options(p)
    p.add_argument("-o", "--output", metavar="FILE", help="the diagram: .svg, .png, .pdf or .dot")
    p.add_argument("--view", choices=VIEW_NAMES, default="layers",
                   help="layers (default): one box per statement; ops: primitive ops; backward: forward and "
                   "backward nodes with their rules; fused: the native kernels")
    p.add_argument("--of", metavar="NAME", help="the scalar whose gradients are drawn (default: the loss, or the "
                   "single output)")
    p.add_argument("--partials", action="store_true", help="also write the local derivative on each edge")
    p.add_argument("--train", action="store_true", help="draw the training form: dropout masks and batch "
                   "statistics (the default is the evaluation form)")
    p.add_argument("--steps", metavar="DIR", help="write one SVG per backward step into DIR")
    p.add_argument("--html", metavar="FILE", help="write the backward steps as one self-contained web page")
    p.add_argument("--heat", metavar="RUN_DIR", help="colour the layers by the gradient norms a run recorded "
                   "with nnc run --grad-stats; also writes FILE_norms.png")
    p.set_defaults(func=cmd_viz)


def cmd_viz(args) -> int:
    if args.heat:
        return cmd_heat(args)
    if not args.model:
        raise NncError("nnc viz needs a model file", hint="nnc viz MODEL.nn -o FILE.svg")
    if not (args.output or args.steps or args.html):
        raise NncError("nothing to write: give -o FILE (.svg, .png, .pdf or .dot), --steps DIR or --html FILE")
    from ..viz import VIEWS, Options, diagram
    from ..viz.render import output_format, write_diagram

    if args.output:
        output_format(args.output)  # refuse a bad suffix before any work
    model = load_model(args)
    given = args.at or args.inputs or args.random_inputs is not None
    ann = None
    if given or args.steps or args.html or args.partials:
        if args.view == "fused":
            raise NncError("--view fused draws the compiled kernels without values",
                           hint="values and gradients go on --view layers, ops or backward")
        backend = args.backend or ("reference" if args.dtype == "float64" else "llvm")
        if args.dtype != "float32" and backend == "llvm":
            raise NncError(f"the native backend computes in float32, got --dtype {args.dtype}",
                           hint="add --backend reference for float64")
        from ..runtime.annotate import annotate

        params = gather_params(args, model)
        inputs = gather_random(args, model, gather_inputs(args, model))
        ann = annotate(model, inputs, params, of=args.of, backend=backend, seed=args.seed,
                       need_gradients=bool(args.steps or args.html))
    if args.output:
        write_diagram(diagram(model, args.view, ann, args.partials, training=args.train), args.output)
        print(f"wrote {args.output}")
    if args.steps or args.html:
        from ..runtime.explain import Explainer
        from ..viz.steps import build_frames, write_frames

        def draw(graph, opts: Options):
            # top to bottom: a page beside its explanation is taller than wide, so a chain of layers drawn
            # left to right would be shrunk to an illegible strip
            opts.rankdir = "TB"
            return VIEWS[args.view](graph, opts)

        explainer = Explainer(model, inputs, params, args.of, args.seed)
        frames = build_frames(explainer, ann, draw, partials=args.partials,
                              expand=bool(args.html) and args.view == "layers")  # the page's boxes open to their ops
        explain = explainer.text()
        if args.steps:
            write_frames(frames, args.steps)
            print(f"wrote {len(frames)} frames to {args.steps}")
        if args.html:
            from ..viz.html import write_page

            write_page(args.html, f"{model.name}: backprop step by step ({explain.splitlines()[0]})", frames, explain)
            print(f"wrote {args.html} ({len(frames)} steps)")
    return 0


def cmd_heat(args) -> int:
    from ..train.grad_stats import read_grad_stats, read_grad_steps
    from ..viz.heat import heat_diagram, plot_path
    from ..viz.plots import plot_norms, plot_steps
    from ..viz.render import output_format, write_diagram

    if not args.output:
        raise NncError("--heat needs -o FILE (.svg, .png, .pdf or .dot) for the coloured diagram")
    output_format(args.output)
    meta, table = read_grad_stats(args.heat)
    model = model_for(args.heat, meta, args.model, args.model_name)
    write_diagram(heat_diagram(model, table), args.output)
    plot = plot_path(args.output)
    plot_norms(plot, table, f"{model.name}: gradient norm per layer")
    written = [str(args.output), str(plot)]
    steps = read_grad_steps(args.heat)
    if steps:   # recurrent layers: the gradient that reaches each time step
        steps_plot = plot_path(args.output, "steps")
        plot_steps(steps_plot, steps, f"{model.name}: gradient norm per time step")
        written.append(str(steps_plot))
    print(f"wrote {', '.join(written[:-1])} and {written[-1]}")
    return 0


def model_for(run_dir, meta: dict, given_path: str | None, given_name: str | None):
    """The model a --grad-stats run folder trained: the file it names, or the one given."""
    from ..model import load

    path = given_path or meta.get("model_file")
    if not path:
        raise NncError(f"--heat: {run_dir} does not say which model it trained",
                       hint="name the model file: nnc viz MODEL.nn --heat RUN_DIR -o FILE")
    if not Path(path).exists():
        raise NncError(f"--heat: the run's model file {path} no longer exists",
                       hint="name the model file: nnc viz MODEL.nn --heat RUN_DIR -o FILE")
    return load(Path(path), model=given_name or meta.get("model"))
