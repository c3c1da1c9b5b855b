"""The command line: `qbench run`, `report`, `compare`, `ratios`, `suite`, `random-suite`,
`backends`, `qbench --version`.

Exit status: 0 when every row is ok, mistrusted, unsupported or unavailable; 1 when any row is a
mismatch or an error; 2 for bad input (suite, plugin, option), reported in one line; 130 or 143
when Ctrl-C or SIGTERM stopped `run` (its finished rows kept, its report written).
"""

from __future__ import annotations

import datetime as dt
import json
import shlex
import signal
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import click
import torch
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

import qbench
from qbench.environment import collect_environment
from qbench.compare import (DEFAULT_THRESHOLD, NOISY_ABOVE, compare_runs, new_failures,
                            regressions, timing_changes)
from qbench.errors import InvalidProblem, QbenchError
from qbench.export import export_pytest_benchmark
from qbench.floor import rates_for_run
from qbench.registry import Backend, load_backends
from qbench.results import (FAILING_STATUSES, RESULT_FILES, SCHEMA_VERSION, ResultWriter,
                            load_results)
from qbench.isolation import run_isolated
from qbench.model_convs import model_convs
from qbench.model_loader import load_model
from qbench.random_suite import DRAWN_FIELDS, SETTABLE_FIELDS, Bounds, random_layers
from qbench.ratios import group_members, head_to_head, networks
from qbench.ratios import markdown as ratio_markdown
from qbench.ratios import terminal_table as ratio_table
from qbench.runner import RunSettings, fill_speedups, run_suite, work
from qbench.suite import (OVERRIDE_SOURCE, coerce_field, load_suite, parse_override, select_cases,
                          slug, suggestion)
from qbench.suite_writer import model_suite, model_warnings, suite_text
from qbench.summary import print_summary, stdout_console
from qbench.timing import TIMING_MODES, TimingPolicy

_PIPED_WIDTH = 120  # columns of the backends, compare and ratios tables when piped


class InputError(click.ClickException):
    """Bad input: one line on stderr, exit status 2."""

    exit_code = 2


def _load(plugins: tuple[str, ...]) -> dict[str, Backend]:
    try:
        return load_backends(plugins)
    except QbenchError as exc:
        raise InputError(str(exc)) from None


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(qbench.__version__, prog_name="qbench")
def cli() -> None:
    """Int8 quantized 2D convolution: competing backends, checked bit for bit, timed properly."""


benchmark_json_option = click.option(
    "--benchmark-json", type=click.Path(path_type=Path), metavar="FILE",
    help="Also write the timings in pytest-benchmark's JSON format (for pytest-benchmark compare).")
plugin_option = click.option("-p", "plugins", multiple=True, metavar="MODULE",
                             help="Also load this plugin module (repeatable), like pytest's -p.")


@cli.command()
@click.argument("suite_file", metavar="SUITE", type=click.Path(path_type=Path))
@click.option("--backends", help="Comma-separated backend or plugin names (default: the suite's, "
                                 "else every default backend of the device).")
@click.option("--set", "overrides", multiple=True, metavar="FIELD=VALUE",
              help="Set a field in every case, over the suite's own values (a TOML value; a "
                   "word needs no quotes); repeatable. E.g. --set in_dtype=qint8 --set "
                   "out_dtype=qint8 --set weight_qscheme=per_tensor: what PyTorch's CUDA path "
                   "accepts.")
@click.option("--case", "case_patterns", multiple=True, metavar="PATTERN",
              help="Run only the cases this names (repeatable): a case's name, its [[case]] "
                   "table's name (all that table's sweep), or a shell-style pattern such as "
                   "'layer3*'.")
@click.option("--baseline", help="Backend that speedups are measured against "
                                 "(default: torch-x86 on cpu, torch-cuda on cuda).")
@click.option("--device", type=click.Choice(["cpu", "cuda"]),
              help="Device whose backends run by default (default: cuda when present).")
@click.option("--out", type=click.Path(path_type=Path),
              help="Result directory, not one holding another run's results (default: "
                   "results/<suite>-<device>-<time>/).")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the random inputs.")
@click.option("--max-time", type=click.FloatRange(min=0), default=TimingPolicy.max_time_s,
              show_default=True, help="Seconds of sampling per case and backend, at most, once "
                                      "--min-samples are taken, while the median has not settled.")
@click.option("--min-samples", type=click.IntRange(min=1), default=TimingPolicy.min_samples,
              show_default=True, help="Timed samples per case and backend, at least.")
@click.option("--min-time", type=click.FloatRange(min=0), default=TimingPolicy.min_time_s,
              show_default=True, help="Seconds of sampling per case and backend, at least.")
@click.option("--timing", type=click.Choice(TIMING_MODES), default="cold", show_default=True,
              help="GPU: flush the L2 cache before each sample by writing 256 MiB (cold) or by "
                   "reading them (cold-read: no dirty lines left that the timed call may have to "
                   "write back), or not (hot), or replay a CUDA graph of several calls (graph: for "
                   "microsecond layers).")
@click.option("--clock-floor", type=click.FloatRange(0, 1), default=RunSettings.clock_floor,
              show_default=True, help="GPU: drop samples taken below this share of the default "
                                      "SM clock (NVML); 0 keeps every sample.")
@click.option("--executor", type=click.Choice(["process", "inline", "ray"]), default="process",
              show_default=True, help="Where rows run: worker processes, one per device (a crash "
                                      "or hang costs one row); this process; or Ray tasks, one "
                                      "GPU each (pip install 'qbench[ray]').")
@click.option("--address", metavar="ADDR", help="With --executor ray: join this Ray cluster "
                                                "(default: start Ray here, on every local GPU).")
@click.option("--case-timeout", type=click.FloatRange(min=0, min_open=True), default=900.0,
              show_default=True, help="Seconds one (case, backend) may take with --executor "
                                      "process before its worker is killed.")
@click.option("--resume", type=click.Path(path_type=Path), metavar="DIR",
              help="Continue the run in DIR: skip the (case, backend) rows already there.")
@benchmark_json_option
@plugin_option
def run(suite_file: Path, backends: str | None, overrides: tuple[str, ...],
        case_patterns: tuple[str, ...], baseline: str | None, device: str | None,
        out: Path | None, seed: int, max_time: float, min_samples: int, min_time: float,
        timing: str, clock_floor: float, executor: str, address: str | None, case_timeout: float,
        resume: Path | None, benchmark_json: Path | None, plugins: tuple[str, ...]) -> None:
    """Check and time every case of SUITE on each backend; write results.csv, results.json and
    report.html."""
    available = _load(plugins)
    known = set(available) | {b.plugin_name for b in available.values()}
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    names = tuple(n.strip() for n in backends.split(",") if n.strip()) if backends else None
    for name in (names or ()) + ((baseline,) if baseline else ()):
        if name not in known:
            raise InputError(f"unknown backend {name!r}{suggestion(name, known)}; known: "
                             f"{', '.join(sorted(known))}")
    try:
        fields = dict(parse_override(text) for text in overrides)
        suite = select_cases(load_suite(suite_file, known, fields), case_patterns)
    except QbenchError as exc:
        raise InputError(str(exc)) from None
    existing: list[dict] | None = None
    if resume is not None:
        if out is not None and out != resume:
            raise InputError("--resume DIR writes to DIR: leave out --out")
        existing = _earlier_rows(resume, suite.name, fields)
    elif out is not None:
        _refuse_earlier_run(out)
    rates, rates_record = rates_for_run(device)  # once the input is known to be good
    settings = RunSettings(device=device, backends=names, baseline=baseline, seed=seed,
                           policy=TimingPolicy(min_samples=min_samples, min_time_s=min_time,
                                               max_time_s=max_time, mode=timing),
                           clock_floor=clock_floor, card_rates=rates)
    started = dt.datetime.now().astimezone()
    out = resume or out or _new_directory(
        Path("results") / f"{slug(suite.name)}-{device}-{started:%Y%m%d-%H%M%S}")
    skip = {(r["case"], r["backend"]) for r in existing or []}
    writer = ResultWriter(out, {
        "qbench_version": qbench.__version__, "suite": suite.name, "suite_file": str(suite_file),
        "description": suite.description, "command": sys.argv, "started": started.isoformat(),
        "settings": {"device": device, "backends": names, "baseline": settings.baseline_name,
                     "seed": seed, "timing": settings.policy.__dict__, "overrides": fields,
                     "cases": list(case_patterns)},
        "environment": collect_environment(), "card_rates": rates_record, "executor": executor,
        "resumed_rows": len(skip),
    }, existing)
    console = Console(stderr=True)
    total = len(work(suite, available, settings, skip))
    if executor == "ray":
        from qbench.ray_executor import run_on_ray  # Ray is an optional extra

        produced = run_on_ray(suite, available, settings, plugins, address, skip)
    elif executor == "process":
        produced = run_isolated(suite, available, settings, plugins, case_timeout, skip)
    else:
        produced = run_suite(suite, available, settings, skip)
    try:
        with _sigterm_interrupts():
            interruption = _record(produced, writer, total, suite.name, console)
    except QbenchError as exc:
        raise InputError(str(exc)) from None
    finally:
        produced.close()  # stops the workers
    fill_speedups(writer.rows, settings.baseline_name)
    writer.finish(finished=dt.datetime.now().astimezone().isoformat(),
                  interrupted=interruption is not None)
    print_summary(writer.rows, settings.baseline_name)
    _write_outputs(out, benchmark_json, console)
    if interruption is not None:
        console.print(f"interrupted after {len(writer.rows) - len(skip)} of {total} rows: the "
                      f"same command with --resume {out} (and no --out) runs the rest",
                      highlight=False, soft_wrap=True)
        raise click.exceptions.Exit(143 if isinstance(interruption, Terminated) else 130)
    if any(r["status"] in FAILING_STATUSES for r in writer.rows):
        raise click.exceptions.Exit(1)


class Terminated(KeyboardInterrupt):
    """SIGTERM (`kill`, a batch scheduler's time limit), raised where Ctrl-C raises
    KeyboardInterrupt, so that a run stops the same way."""


@contextmanager
def _sigterm_interrupts() -> Iterator[None]:
    """Within the block, SIGTERM raises Terminated in the main thread; the handler before it
    afterwards."""
    def terminate(signum: int, frame: object) -> None:
        raise Terminated()

    previous = signal.signal(signal.SIGTERM, terminate)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _record(rows: Iterator[dict], writer: ResultWriter, total: int, title: str,
            console: Console) -> KeyboardInterrupt | None:
    """Append each row as it comes, with a progress bar; what stopped the run (Ctrl-C's
    KeyboardInterrupt or SIGTERM's Terminated), None when it ran to its end."""
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                  TimeElapsedColumn(), console=console, transient=True) as progress:
        task = progress.add_task(escape(title), total=total)
        try:
            for row in rows:
                writer.append(row)
                progress.update(task, advance=1,
                                description=f"{escape(row['case'])} / {escape(row['backend'])}")
        except KeyboardInterrupt as interruption:
            return interruption
    return None


def _refuse_earlier_run(directory: Path) -> None:
    """Bad input when `directory` (--out) holds a run's results: a new run would overwrite them."""
    held = [name for name in RESULT_FILES if (directory / name).exists()]
    if held:
        raise InputError(f"--out: {directory} already holds a run ({', '.join(held)}): continue "
                         f"it with --resume {directory}, or name another directory")


def _new_directory(default: Path) -> Path:
    """Create `default` and return it, or the first of `default`-2, -3, ... that no other run
    (one started in the same second) has created."""
    number = 1
    while True:
        candidate = default.with_name(f"{default.name}-{number}") if number > 1 else default
        try:
            candidate.mkdir(parents=True)
            return candidate
        except FileExistsError:
            number += 1


def _earlier_rows(directory: Path, suite_name: str, overrides: dict) -> list[dict]:
    """The rows of the run to resume, after checking it ran the same suite with the same --set
    fields (other fields would measure other problems under the same case names)."""
    try:
        header, rows = load_results(directory)
    except QbenchError as exc:
        raise InputError(f"--resume: {exc}") from None
    if header.get("schema_version") != SCHEMA_VERSION:
        raise InputError(f"--resume: {directory} was written in schema version "
                         f"{header.get('schema_version')}, this qbench writes {SCHEMA_VERSION}: "
                         f"start a new run")
    if header.get("suite") != suite_name:
        raise InputError(f"--resume: {directory} holds suite {header.get('suite')!r}, "
                         f"not {suite_name!r}")
    earlier = header.get("settings", {}).get("overrides", {})
    if earlier != overrides:
        raise InputError(f"--resume: {directory} ran with --set {_as_sets(earlier)}, this run "
                         f"with --set {_as_sets(overrides)}; give the same fields")
    return rows.to_dict("records")


def _as_sets(fields: dict) -> str:
    return " ".join(f"{name}={value}" for name, value in fields.items()) or "(none)"


def _write_outputs(directory: Path, benchmark_json: Path | None, console: Console) -> None:
    # imported here: matplotlib costs every spawned worker (which re-imports this module) 0.4 s
    from qbench.report import render_report

    report = render_report(directory)
    # soft_wrap: paths on one line, whatever the console's width, to copy or click
    console.print(f"results: {directory}/results.csv, results.json; report: {report}",
                  highlight=False, soft_wrap=True)
    if benchmark_json is not None:
        count = export_pytest_benchmark(directory, benchmark_json)
        console.print(f"pytest-benchmark JSON: {benchmark_json} ({count} benchmarks)",
                      highlight=False, soft_wrap=True)


@cli.command()
@click.argument("directory", type=click.Path(path_type=Path))
@benchmark_json_option
def report(directory: Path, benchmark_json: Path | None) -> None:
    """Render DIRECTORY/report.html again from its results.csv and results.json."""
    try:
        _write_outputs(directory, benchmark_json, Console(stderr=True))
    except QbenchError as exc:
        raise InputError(str(exc)) from None


@cli.command()
@click.argument("old", type=click.Path(path_type=Path))
@click.argument("new", type=click.Path(path_type=Path))
@click.option("--fail-above", type=click.FloatRange(min=0), metavar="PCT",
              help="Exit 1 when a matched row is SLOWER by more than PCT percent, or failed "
                   "the check in NEW where it passed in OLD (a CI gate).")
@click.option("--threshold", type=click.FloatRange(min=0), default=DEFAULT_THRESHOLD * 100,
              show_default=True, metavar="PCT",
              help="Differences within this many percent (or the noise, if larger) are SAME.")
@click.option("--html", type=click.Path(path_type=Path), metavar="FILE",
              help="Where to write the comparison page (default: NEW/compare.html).")
def compare(old: Path, new: Path, fail_above: float | None, threshold: float,
            html: Path | None) -> None:
    """Compare the timings of two result directories, OLD then NEW, row by row."""
    try:
        matched = compare_runs(old, new, threshold / 100)
    except QbenchError as exc:
        raise InputError(str(exc)) from None
    table = Table(title=f"{old} -> {new}", title_justify="left")
    for column in ("case", "backend", "old us", "new us", "ratio", "noise %", "label", "check"):
        table.add_column(column, justify="left" if column in ("case", "backend", "check")
                         else "right")
    colours = {"FASTER": "green", "SLOWER": "red", "NOISY": "yellow", "SAME": ""}
    for row in matched.itertuples():
        table.add_row(escape(row.case), escape(row.backend), f"{row.median_us_old:.4g}",
                      f"{row.median_us_new:.4g}", f"{row.ratio:.3f}", f"{row.noise * 100:.2f}",
                      f"[{colours[row.label]}]{row.label}[/]" if colours[row.label] else row.label,
                      f"[red]{row.check}[/]" if row.check else "")
    stdout_console(_PIPED_WIDTH).print(table)
    from qbench.report import templates

    counts = matched["label"].value_counts().to_dict()
    changes = timing_changes(matched)
    failed_checks = int((matched["check"] != "").sum())
    html = html or new / "compare.html"
    html.write_text(templates.get_template("compare.html.j2").render(
        old=str(old), new=str(new), rows=matched.to_dict("records"), counts=counts,
        noisy_pct=round(NOISY_ABOVE * 100), threshold_pct=threshold, timing_changes=changes,
        failed_checks=failed_checks))
    summary = ", ".join(f"{k}: {v}" for k, v in counts.items()) or \
        "no problem timed on the same backend in both runs"
    click.echo(f"{summary}; page: {html}")
    if changes:
        click.echo(f"warning: the runs timed rows differently ({'; '.join(changes)}): their "
                   "ratios measure that as much as the code", err=True)
    if failed_checks:
        click.echo(f"warning: {failed_checks} row(s) failed the check in one run or both "
                   "(`check`): their ratios time wrong outputs", err=True)
    if fail_above is not None:
        slower, failing = regressions(matched, fail_above), new_failures(matched)
        if len(slower):
            click.echo(f"{len(slower)} row(s) slower by more than {fail_above:g} %", err=True)
        if len(failing):
            click.echo(f"{len(failing)} row(s) failed the check in {new} that passed it in "
                       f"{old}", err=True)
        if len(slower) or len(failing):
            raise click.exceptions.Exit(1)


@cli.command()
@click.argument("directory", type=click.Path(path_type=Path))
@click.argument("backend")
@click.option("--against", "others", multiple=True, metavar="BACKEND",
              help="A backend to set BACKEND against (repeatable), or a group, 'a,b': per case "
                   "the fastest of them.")
@click.option("--floor", is_flag=True, help="Also set BACKEND against each case's floor: its "
                                            "ops and bytes at the card's rates, measured in the "
                                            "run.")
@click.option("--markdown", is_flag=True, help="Print a Markdown table, for notes and READMEs.")
def ratios(directory: Path, backend: str, others: tuple[str, ...], floor: bool,
           markdown: bool) -> None:
    """BACKEND's median over each --against backend's, per case of DIRECTORY's run, with the
    geomean, the worst case and the wins, over cases where both rows are ok; with --floor, over
    each case's floor too, with how many cases are within 2x of it; then the network's time on
    both sides per batch size (median x count, summed over those cases)."""
    if not others and not floor:
        raise InputError("ratios: name a backend to compare with (--against NAME), or --floor")
    try:
        _, rows = load_results(directory)
    except QbenchError as exc:
        raise InputError(str(exc)) from None
    known = list(dict.fromkeys(rows["backend"]))
    for name in (backend, *(member for other in others for member in group_members(other))):
        if name not in known:
            raise InputError(f"{directory}: no rows of backend {name!r}{suggestion(name, known)}; "
                             f"it has {', '.join(known)}")
    if floor and rows.loc[rows["backend"] == backend, "floor_us"].isna().all():
        raise InputError(f"{directory}: no floors for {backend!r}: a run measures them on a CUDA "
                         "card only, from results schema version 4 on")
    table, versus = head_to_head(rows, backend, others, floor)
    summaries = [*versus, *networks(rows, table, versus)]
    if markdown:
        click.echo(ratio_markdown(table, summaries))
        return
    against = ", ".join(summary.other for summary in versus)
    stdout_console(_PIPED_WIDTH).print(
        ratio_table(table, f"{directory}: {backend} against {against} (median us)"))
    for summary in summaries:
        click.echo(summary.sentence())


@cli.command("backends")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON list instead of a table.")
@plugin_option
def list_backends(as_json: bool, plugins: tuple[str, ...]) -> None:
    """List every backend of every plugin: available or why not, and what it does."""
    backends = _load(plugins)
    records = [{
        "name": b.name, "plugin": b.plugin_name, "plugin_version": b.plugin_version,
        "version": b.info.version, "device": b.info.device, "numerics": b.info.numerics,
        "default": b.info.default, "available": b.availability.ok,
        "reason": b.availability.reason, "description": b.info.description,
    } for b in backends.values()]
    if as_json:
        click.echo(json.dumps(records, indent=1))
        return
    table = Table(title="qbench backends")
    for column in ("backend", "plugin", "device", "numerics", "available", "description / reason"):
        table.add_column(column)
    for r in records:
        status = "[green]yes[/]" if r["available"] else "[red]no[/]"
        detail = r["description"] if r["available"] else f"{r['description']} -- {r['reason']}"
        table.add_row(escape(r["name"]), escape(f"{r['plugin']} {r['plugin_version']}"),
                      r["device"], r["numerics"], status, escape(detail))
    stdout_console(_PIPED_WIDTH).print(table)


def _input_shape(context: click.Context, param: click.Parameter, text: str) -> tuple[int, ...]:
    """--input C,H,W as three positive integers."""
    try:
        shape = tuple(int(part) for part in text.split(","))
    except ValueError:
        shape = ()
    if len(shape) != 3 or min(shape) < 1:
        raise click.BadParameter(f"expected C,H,W: three positive integers, got {text!r}")
    return shape


@cli.command("suite")
@click.argument("model", metavar="MODULE:NAME[(ARGUMENTS)]")
@click.option("--input", "input_shape", required=True, metavar="C,H,W", callback=_input_shape,
              help="The model's input: channels, height and width (it runs once, at batch 1).")
@click.option("--batch", "batches", type=click.IntRange(min=1), multiple=True,
              help="A batch size of the suite's cases (repeatable; default: 1 and 32).")
@click.option("--name", help="The suite's name (default: NAME, with its arguments).")
@click.option("--description", help="The suite's description.")
@click.option("--out", type=click.Path(path_type=Path), metavar="FILE",
              help="Write the suite to FILE (default: standard output).")
def make_suite(model: str, input_shape: tuple[int, int, int], batches: tuple[int, ...],
          name: str | None, description: str | None, out: Path | None) -> None:
    """Write a suite of every distinct 2D conv of a PyTorch model, counted, with the ReLUs and
    BatchNorms that quantized inference fuses into them; of a quantized model, with its convs'
    dtypes, weight qschemes, zero points and fused ReLUs. MODULE:NAME is a torch.nn.Module or a
    function that returns one, such as torchvision.models:resnet50 (the current directory is
    searched too); MODULE:NAME(ARGUMENTS) calls it with Python literals, such as
    'timm:create_model("resnet50")'."""
    if "" not in sys.path:
        sys.path.insert(0, "")  # as `python -m` does, so that a model of one's own is found
    try:
        convs = model_convs(load_model(model), input_shape, model)
    except QbenchError as exc:
        raise InputError(str(exc)) from None
    for warning in model_warnings(convs):
        click.echo(f"qbench suite: {warning}", err=True)
    if not convs.calls:
        raise InputError(f"model {model}: qbench can measure none of its convs")
    command = f"qbench suite {shlex.quote(model)} --input {','.join(map(str, input_shape))}"
    shape = "x".join(map(str, input_shape))
    text = model_suite(convs, command, name or slug(model.partition(":")[2]),
                       description or f"Every distinct conv of {model} at {shape}, int8",
                       batches or (1, 32))
    _write_suite(text, out, f"the suite of {len(convs.calls)} convolutions")


@cli.command("random-suite")
@click.argument("count", type=click.IntRange(min=1))
@click.option("--seed", type=int, default=0, show_default=True,
              help="The draw's seed: the same seed, bounds and --set write the same suite.")
@click.option("--max-channels", type=click.IntRange(min=1), default=Bounds.max_channels,
              show_default=True, help="The most input or output channels a problem may have.")
@click.option("--max-size", type=click.IntRange(min=1), default=Bounds.max_size,
              show_default=True, help="The largest height or width a problem's input may have.")
@click.option("--set", "settings", multiple=True, metavar="FIELD=VALUE",
              help="Set a field in every problem instead of drawing it, the rest drawn around "
                   "it (repeatable), e.g. --set in_dtype=quint8 --set out_dtype=quint8: what "
                   "PyTorch's CPU engines accept; --set reduce_range=true: 7 bits' activations, "
                   "zero points drawn within them.")
@click.option("--batch", "batches", type=click.IntRange(min=1), multiple=True,
              help="A batch size of the suite's cases (repeatable; default: 2).")
@click.option("--name", help="The suite's name (default: random-COUNT-seed-SEED).")
@click.option("--out", type=click.Path(path_type=Path), metavar="FILE",
              help="Write the suite to FILE (default: standard output).")
def make_random_suite(count: int, seed: int, max_channels: int, max_size: int,
                      settings: tuple[str, ...], batches: tuple[int, ...], name: str | None,
                      out: Path | None) -> None:
    """Write a suite of COUNT random problems, their shapes and quantization drawn (dense,
    grouped and depthwise convs, kernel sizes, strides, paddings, dilations, dtypes, zero points,
    weight schemes, bias, ReLU) but the fields set, for checking backends over more of the
    problem space than hand-written suites reach: `qbench run` it."""
    try:
        fixed = {field: coerce_field(OVERRIDE_SOURCE, None, field, value)
                 for field, value in map(parse_override, settings)}
        unknown = sorted(set(fixed) - set(SETTABLE_FIELDS))
        if unknown:
            raise InputError(f"{OVERRIDE_SOURCE}: field {unknown[0]!r}: not a drawn field; "
                             f"drawn: {', '.join(DRAWN_FIELDS)}; set too: reduce_range (set "
                             "others with qbench run --set)")
        suite_batches = batches or (2,)
        layers = random_layers(count, seed, Bounds(max_channels, max_size), fixed,
                               max(suite_batches))
    except InvalidProblem as exc:
        raise InputError(f"{OVERRIDE_SOURCE}: field {exc.field!r}: {exc.message}") from None
    except QbenchError as exc:
        raise InputError(str(exc)) from None
    command = " ".join([f"qbench random-suite {count} --seed {seed} --max-channels "
                        f"{max_channels} --max-size {max_size}",
                        *(f"--set {shlex.quote(text)}" for text in settings),
                        *(f"--batch {batch}" for batch in batches)])
    note = (f"Made by `{command}` (qbench {qbench.__version__}): {count} problems drawn at "
            "random; out_scale and out_zero_point auto.")
    text = suite_text(name or f"random-{count}-seed-{seed}",
                      f"{count} random problems (seed {seed}), int8", suite_batches, layers,
                      [note])
    _write_suite(text, out, f"a suite of {count} random problems")


def _write_suite(text: str, out: Path | None, what: str) -> None:
    """A suite's text on stdout, or in file `out` with `what` it holds said on stderr."""
    if out is None:
        click.echo(text, nl=False)
        return
    try:
        out.write_text(text)
    except OSError as exc:
        raise InputError(f"--out {out}: {exc.strerror or exc}") from None
    click.echo(f"{out}: {what}", err=True)


def main() -> None:
    """Entry point of the `qbench` script and of `python -m qbench`."""
    cli(prog_name="qbench")
