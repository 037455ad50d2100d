"""Plots and the markdown tables of a run_bench.py result, for docs/performance.md.

matplotlib is a bench-only tool, not a dependency: it is imported only when a plot is asked for. The tables need
nothing but the JSON, so the report's figures can be re-rendered from any saved run.

Usage: .venv/bin/python tests/bench/plots.py results.json --out docs/img   (the PNGs)
       .venv/bin/python tests/bench/plots.py results.json --table          (the markdown tables, to paste)
"""

from __future__ import annotations

import argparse
import json
import os
import sys

SIDES = {"copy_loop": "copy loop", "checked_copy_loop": "checked copy loop", "rclone": "rclone", "worker": "worker"}
SCALEOUT_SIDES = {"processors_1": "1 processor", "processors_2": "2 processors"}
COMPARED = {"small": "small", "big": "big", "remote": "remote"}
COLOURS = {"moto-source": "#1f77b4", "moto-target": "#aec7e8", "client": "#ff7f0e", "rclone": "#17becf",
           "processor": "#2ca02c", "processor-2": "#98df8a", "status-processor": "#d62728", "populator": "#e377c2",
           "broker": "#9467bd", "proxy-source": "#c7c7c7", "proxy-target": "#7f7f7f"}
PROCESS_ORDER = tuple(COLOURS)

WORKER_SIDE = ("processor", "populator", "status-processor", "broker")  # the broker's CPU above its idle


def _ratio_goal(phase: str, key: str, threshold: float, strict: bool = False):
    def measure(results: dict):
        value = results[phase][key]
        return "%.2f×" % value, value > threshold if strict else value >= threshold
    return measure


def _cpu_goal(results: dict):
    """Worker-side CPU per version (processor + populator + status processor + broker above idle) against the copy
    loop client's, small phase."""
    small = results["small"]
    worker = sum(small["worker"]["cpu_ms_per_version"].get(p, 0.0) for p in WORKER_SIDE)
    loop = small["copy_loop"]["cpu_ms_per_version"]["client"]
    return "%.1f ms against %.1f ms (%.2f×)" % (worker, loop, worker / loop), worker <= loop


def _latency_goal(results: dict):
    lat = results["latency"]
    at_rate = lat["achieved_rate_per_s"] >= 0.95 * 50
    return "p99 %.2f s at %.1f/s" % (lat["p99_s"], lat["achieved_rate_per_s"]), at_rate and lat["p99_s"] < 1.0


def _rss_goal(results: dict):
    rss = results["rss"]
    return "%.0f MiB (%d MiB object)" % (rss["processor_vmhwm_mib"], rss["object_mib"]), (
        rss["processor_vmhwm_mib"] < 200 and rss["object_mib"] >= 1024)


# Issue 15's goals, in its numbering: (what, measure(results) -> (figure shown, met)).
GOALS = (
    ("1. Worker ≥ 0.9× the copy loop, 2,000 × 4 KiB", _ratio_goal("small", "ratio", 0.9)),
    ("1. Worker ≥ 1.0× the copy loop, 30 ms per response", _ratio_goal("remote", "ratio", 1.0)),
    ("1. Worker ahead of rclone, 4 KiB", _ratio_goal("small", "worker_vs_rclone", 1.0, strict=True)),
    ("1. Worker ahead of rclone, 30 ms per response", _ratio_goal("remote", "worker_vs_rclone", 1.0, strict=True)),
    ("2. Worker-side CPU per version ≤ the copy loop client's", _cpu_goal),
    ("3. Big objects (64 MiB) ≥ 0.9× the copy loop's MB/s", _ratio_goal("big", "ratio", 0.9)),
    ("4. p99 PUT → COMPLETED < 1 s at 50 notified versions/s", _latency_goal),
    ("5. Two processors of one site ≥ 1.8× one, 30 ms per response", _ratio_goal("scaleout", "ratio", 1.8)),
    ("6. Processor peak RSS < 200 MiB copying a 1 GiB object", _rss_goal),
)


def require_matplotlib():
    """pyplot on a file-only backend; a clear exit when matplotlib is missing."""
    try:
        import matplotlib
    except ImportError:
        raise SystemExit("plots need matplotlib, which is not a dependency: .venv/bin/pip install matplotlib") from None
    matplotlib.use("Agg")
    from matplotlib import pyplot

    return pyplot


def sides_of(results: dict, phase: str) -> dict[str, dict]:
    """label -> side figures of a throughput phase (skipped sides left out)."""
    names = SCALEOUT_SIDES if phase == "scaleout" else SIDES
    return {label: results[phase][key] for key, label in names.items()
            if key in results[phase] and "skipped" not in results[phase][key]}


def render(results: dict, directory: str) -> list[str]:
    """Write throughput.png, cpu_per_version.png and latency.png (those the results have data for)."""
    pyplot = require_matplotlib()
    os.makedirs(directory, exist_ok=True)
    written = []
    for name, draw in (("throughput", plot_throughput), ("cpu_per_version", plot_cpu), ("latency", plot_latency)):
        figure = draw(pyplot, results)
        if figure is not None:
            path = os.path.join(directory, name + ".png")
            figure.savefig(path, dpi=110, bbox_inches="tight")
            pyplot.close(figure)
            written.append(path)
    return written


def _title(results: dict) -> str:
    return "commit %s, %s, %s cores%s" % (results.get("commit"), results.get("date_utc"), results.get("cpu_count"),
                                          ", --quick" if results.get("quick") else "")


def _phase_title(results: dict, phase: str) -> str:
    figures = results[phase]
    size = "%d KiB" % (figures["object_bytes"] // 1024) if figures["object_bytes"] < 2 ** 20 else \
        "%d MiB" % (figures["object_bytes"] // 2 ** 20)
    delay = ", %g ms per response" % figures["rtt_ms"] if "rtt_ms" in figures else ""
    return "%s: %s × %s%s" % (phase, "{:,}".format(figures["objects"]), size, delay)


def plot_throughput(pyplot, results: dict):
    """(a) One panel per phase, one bar per side: objects/s, MB/s for big objects."""
    phases = [phase for phase in ("small", "big", "remote", "scaleout") if phase in results]
    if not phases:
        return None
    figure, axes = pyplot.subplots(1, len(phases), figsize=(4.2 * len(phases), 4), squeeze=False)
    for axis, phase in zip(axes[0], phases):
        unit = "mb_per_s" if phase == "big" else "objects_per_s"
        sides = sides_of(results, phase)
        values = [side[unit] for side in sides.values()]
        bars = axis.bar(list(sides), values, color=["#999999", "#666666", "#4c72b0", "#dd8452", "#55a868"][:len(sides)])
        axis.bar_label(bars, fmt="%.0f")
        axis.set_title(_phase_title(results, phase), fontsize=9)
        axis.set_ylabel("MiB/s" if unit == "mb_per_s" else "objects/s")
        axis.tick_params(axis="x", labelrotation=30, labelsize=8)
    figure.suptitle("Throughput per side (%s)" % _title(results), fontsize=10)
    figure.tight_layout()
    return figure


def plot_cpu(pyplot, results: dict):
    """(b) One panel per phase, one stacked bar per side: CPU ms per replicated version, by process."""
    phases = [phase for phase in ("small", "big", "remote", "scaleout") if phase in results]
    if not phases:
        return None
    figure, axes = pyplot.subplots(1, len(phases), figsize=(4.2 * len(phases), 4.5), squeeze=False)
    processes = _processes(results, phases)
    spare = iter(pyplot.get_cmap("Set2").colors)
    colours = {process: COLOURS.get(process) or next(spare) for process in processes}
    for axis, phase in zip(axes[0], phases):
        sides = sides_of(results, phase)
        bottom = [0.0] * len(sides)
        for process in processes:
            values = [side["cpu_ms_per_version"].get(process, 0.0) for side in sides.values()]
            axis.bar(list(sides), values, bottom=bottom, label=process, color=colours[process])
            bottom = [b + v for b, v in zip(bottom, values)]
        axis.set_title(_phase_title(results, phase), fontsize=9)
        axis.set_ylabel("CPU ms per version")
        axis.tick_params(axis="x", labelrotation=30, labelsize=8)
    axes[0][-1].legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    figure.suptitle("CPU per replicated version, by process (%s)" % _title(results), fontsize=10)
    figure.tight_layout()
    return figure


def _processes(results: dict, phases: list[str]) -> list[str]:
    """Every process named in the phases' CPU accounting (not the total), in PROCESS_ORDER first."""
    found = {name for phase in phases for side in sides_of(results, phase).values()
             for name in side["cpu_ms_per_version"] if name != "total"}
    return [name for name in PROCESS_ORDER if name in found] + sorted(found - set(PROCESS_ORDER))


def plot_latency(pyplot, results: dict):
    """(c) The latency phase's PUT -> COMPLETED distribution, p50 and p99 marked."""
    samples = results.get("latency", {}).get("samples_s")
    if not samples:
        return None
    figure, axis = pyplot.subplots(figsize=(7, 4))
    axis.hist(samples, bins=60, color="#4c72b0")
    for name, colour in (("p50_s", "#55a868"), ("p99_s", "#c44e52")):
        value = results["latency"][name]
        axis.axvline(value, color=colour, linestyle="--", label="%s %.2f s" % (name[:3], value))
    axis.axvline(2.0, color="black", linestyle=":", label="goal: p99 < 2 s")
    axis.set_xlabel("PUT on the source → COMPLETED (replica written), s")
    axis.set_ylabel("versions")
    axis.legend()
    latency = results["latency"]
    axis.set_title("Latency: %d PUTs at %.1f/s (%s)" % (latency["objects"], latency["achieved_rate_per_s"],
                                                        _title(results)), fontsize=9)
    return figure


def table(results: dict) -> str:
    """The report's tables in markdown: throughput, CPU per version, latency/memory/scale-out, goals."""
    parts = ["Run: commit %s, %s, %s cores, load average %s at start and %s at end%s." % (
        results.get("commit"), results.get("date_utc"), results.get("cpu_count"),
        _load(results.get("load_average_start")), _load(results.get("load_average_end")),
        ", --quick" if results.get("quick") else "")]
    parts += [_throughput_table(results), _cpu_table(results), _others_table(results), _goals_table(results)]
    return "\n\n".join(part for part in parts if part) + "\n"


def _load(load) -> str:
    return "/".join("%.2f" % value for value in load) if load else "?"


def _side_cell(side: dict | None, unit: str) -> str:
    if side is None:
        return "—"
    if "skipped" in side:
        return "skipped"
    rate = "%.0f MiB/s" % side["mb_per_s"] if unit == "mb_per_s" else "%.0f obj/s" % side["objects_per_s"]
    return "%.1f s, %s" % (side["seconds"], rate)


def _ratio(value) -> str:
    return "%.2f×" % value if value is not None else "—"


def _throughput_table(results: dict) -> str:
    rows = ["| Phase | Copy loop | Checked copy loop | rclone | Worker | Worker / loop | rclone / loop | "
            "Worker / checked | Worker / rclone |", "|---|---|---|---|---|---|---|---|---|"]
    for phase in COMPARED:
        if phase not in results:
            continue
        figures, unit = results[phase], "mb_per_s" if phase == "big" else "objects_per_s"
        cells = [_side_cell(figures.get(side), unit) for side in SIDES]
        ratios = [_ratio(figures.get(key)) for key in ("ratio", "rclone_vs_loop", "worker_vs_checked",
                                                        "worker_vs_rclone")]
        rows.append("| %s | %s |" % (_phase_title(results, phase), " | ".join(cells + ratios)))
    return "\n".join(rows) if len(rows) > 2 else ""


def _cpu_table(results: dict) -> str:
    """CPU ms per replicated version: one table per compared phase, a row per process, a column per side."""
    tables = []
    for phase in (phase for phase in COMPARED if phase in results):
        sides = sides_of(results, phase)
        rows = ["| %s, CPU ms per version | %s |" % (_phase_title(results, phase), " | ".join(sides)),
                "|---|%s" % ("---|" * len(sides))]
        for process in _processes(results, [phase]) + ["total"]:
            values = [side["cpu_ms_per_version"].get(process) for side in sides.values()]
            cells = ["" if value is None else ("**%.1f**" if process == "total" else "%.1f") % value
                     for value in values]
            rows.append("| %s | %s |" % ("**total**" if process == "total" else process, " | ".join(cells)))
        tables.append("\n".join(rows))
    return "\n\n".join(tables)


def _others_table(results: dict) -> str:
    rows = ["| Measure | Value |", "|---|---|"]
    if "latency" in results:
        lat = results["latency"]
        rows.append("| Latency PUT → COMPLETED, %s PUTs of 4 KiB at %.1f/s (asked %g/s) | p50 %.2f s, p90 %.2f s, "
                    "**p99 %.2f s**, max %.2f s |" % ("{:,}".format(lat["objects"]), lat["achieved_rate_per_s"],
                                                     lat["target_rate_per_s"], lat["p50_s"], lat["p90_s"],
                                                     lat["p99_s"], lat["max_s"]))
    for phase in COMPARED:
        if "source_listing_s" in results.get(phase, {}):
            rows.append("| %s: one ListObjectVersions of the source bucket, which the worker's scan makes | "
                        "%.2f s |" % (_phase_title(results, phase), results[phase]["source_listing_s"]))
    if "rss" in results:
        rss = results["rss"]
        rows.append("| Processor peak RSS (VmHWM) copying one %d MiB object (%.1f s) | **%.1f MiB** |" % (
            rss["object_mib"], rss["copy_s"], rss["processor_vmhwm_mib"]))
    if "scaleout" in results:
        out = results["scaleout"]
        rows.append("| Scale-out, %s × 4 KiB, %g ms per response, concurrency %d each, %d partitions | 1 processor "
                    "%.0f obj/s, 2 processors %.0f obj/s: **%.2f×** |" % (
                        "{:,}".format(out["objects"]), out["rtt_ms"], out["concurrency"], out["partitions"],
                        out["processors_1"]["objects_per_s"], out["processors_2"]["objects_per_s"], out["ratio"]))
    return "\n".join(rows) if len(rows) > 2 else ""


def _goals_table(results: dict) -> str:
    rows = ["| Goal | Measured | Met |", "|---|---|---|"]
    for what, measure in GOALS:
        try:
            figure, met = measure(results)
        except (KeyError, TypeError, ZeroDivisionError):  # a phase not run, a side skipped
            rows.append("| %s | not measured | — |" % what)
            continue
        rows.append("| %s | %s | %s |" % (what, figure, "yes" if met else "**no**"))
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("results", help="a JSON file written by run_bench.py --out")
    parser.add_argument("--out", default=None, metavar="DIR", help="write the PNGs here")
    parser.add_argument("--table", action="store_true", help="print the markdown tables")
    args = parser.parse_args(argv)
    with open(args.results) as saved:
        results = json.load(saved)
    if args.table or not args.out:
        sys.stdout.write(table(results))
    if args.out:
        for path in render(results, args.out):
            print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
