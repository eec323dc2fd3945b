"""The `repro` command line: list, run, check, report, sweep, reproduce, show, export."""
from __future__ import annotations

import argparse
import signal
import sys
from pathlib import Path

from common.papers import PAPERS, TIER_NAMES, UsageError, get_paper

EXIT_USAGE = 2


class _Parser(argparse.ArgumentParser):
    """argparse, but bad input is one line and exit code 2, like the rest of the CLI."""

    def error(self, message):
        raise UsageError(message)


def _counting(low: int):
    """An argparse type: an integer >= `low`, else one line naming what is valid."""
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            value = None
        if value is None or value < low:
            raise argparse.ArgumentTypeError(f"{text!r} is not an integer >= {low}")
        return value
    return parse


SEED, POSITIVE = _counting(0), _counting(1)


def _seeds(args, runner) -> list[int]:
    if args.seed is not None:
        return [args.seed]
    return list(range(args.seeds if args.seeds is not None else runner.SEEDS[args.tier]))


def cmd_list(args) -> int:
    from common.checks import expected_path, load_expected
    for paper in PAPERS.values():
        state = "implemented" if paper.implemented else "planned"
        claims = ""
        if paper.implemented:
            claims = f"{len(load_expected(expected_path(paper)).claims)} claims"
        print(f"{paper.name:<14} {state:<12} {claims:<10} {paper.citation}")
    return 0


def cmd_run(args) -> int:
    from common import config as configs
    from common.experiments import get_point, tier_points
    from common.runs import prepare, run_one
    paper = get_paper(args.paper)
    if not paper.implemented:
        raise UsageError(f"paper {args.paper!r} is planned, not implemented yet")
    runner = paper.runner()
    configs.check_tier(args.tier)
    overrides = configs.parse_sets(runner, args.set)
    points = [get_point(runner, args.tier, args.point)] if args.point else tier_points(runner, args.tier) or [None]
    seeds = _seeds(args, runner)
    for point in points:  # every run's input is checked before the first one starts
        prepare(args.paper, args.tier, overrides, point and point.name)
    failed = 0
    for point in points:
        # a point made once for every seed (Point.seeds) runs with other seeds only when named with --point
        mine = seeds if args.point or point is None or point.seeds is None else [s for s in seeds if s in point.seeds]
        for seed in mine:
            record = run_one(args.paper, args.tier, seed, overrides, device=args.device, resume=args.resume,
                             use_wandb=args.wandb, threads=args.threads, quiet=args.quiet,
                             point=point and point.name, pilot=args.pilot)
            where = f"{args.paper}/{args.tier}" + (f"/{point.name}" if point else "")
            line = f"{where}/s{seed}: {record['status']} in {record['wall_time_s']:.1f}s"
            if record["reason"]:
                line += f" ({record['reason']})"
            print(line)
            failed += record["status"] == "failed"
    return 1 if failed else 0


def cmd_check(args) -> int:
    from common.checks import check_paper, expected_path, load_expected, mismatch
    from common.records import superseded_why
    from common.config import check_tier
    from common.papers import implemented_papers
    check_tier(args.tier)
    papers = [get_paper(n) for n in args.papers] if args.papers else implemented_papers()
    for paper in papers:  # a malformed expected.yaml is bad input: one line, exit 2, before any judging
        if paper.implemented:
            load_expected(expected_path(paper))
    problems, notes = [], []
    rows = []
    for paper in papers:
        if not paper.implemented:
            problems.append(f"{paper.name}: planned, not implemented yet: nothing to check")
            continue
        result = check_paper(paper, args.tier)
        verdicts = result.verdicts
        problems += result.errors + [mismatch(v) for v in verdicts if not v.matches]
        for run in result.superseded:
            notes.append(f"{paper.name}/{args.tier}: superseded, not judged: {run.path.name} "
                         f"({superseded_why(run, result.judged, paper.runner())})")
        for v in verdicts:
            flag = "ok" if v.matches else "MISMATCH"
            rows.append((f"{paper.name}/{v.claim.id}", v.claim.kind, v.claim.rule, v.claim.checks[args.tier].text,
                         v.ours, v.seeds or "-", v.status, v.expected, flag))
    if rows:
        widths = [max(len(str(r[i])) for r in rows + [_HEADER]) for i in range(len(_HEADER))]
        for row in [_HEADER] + rows:
            print("  ".join(str(c).ljust(w) for c, w in zip(row, widths)).rstrip())
    for note in notes:
        print(f"note: {note}", file=sys.stderr)
    for problem in problems:
        print(f"error: {problem}", file=sys.stderr)
    if not rows and not problems:
        print(f"no claims have a check at tier {args.tier}")
    return 1 if problems else 0


_HEADER = ("claim", "kind", "rule", "check", "ours (across seeds)", "seeds passing", "status", "expected", "")


def cmd_report(args) -> int:
    from common.report import build_report
    out = build_report()
    print(f"wrote {out / 'REPORT.md'} and {out / 'index.html'}")
    return 0


def cmd_reproduce(args) -> int:
    from common.reproduce import reproduce
    return reproduce(args.paper, args.tier, workers=args.workers, results=args.results, resume=args.resume,
                     device=args.device)


def cmd_export(args) -> int:
    from common.export import export
    return export(args.tier, args.format, args.out)


def cmd_show(args) -> int:
    from common.export import show
    return show(args.paper, args.tier)


def cmd_sweep(args) -> int:
    from common.sweep import plan, run_sweep
    seeds = [args.seed] if args.seed is not None else None if args.seeds is None else list(range(args.seeds))
    jobs = plan(args.papers, args.tier, seeds, args.set, args.grid, args.point, pilot=args.pilot)
    counts = run_sweep(jobs, workers=args.workers, launcher=args.launcher, device=args.device,
                       threads=args.threads)
    print(f"sweep: {counts['done']} run, {counts['skipped']} already in results, "
          f"{counts['elsewhere']} run by another sweep, {counts['failed']} failed")
    return 1 if counts["failed"] else 0


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="repro", description="Paper-reproduction suite: run, check and report.")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    sub.add_parser("list", help="the papers and their state").set_defaults(func=cmd_list)

    run = sub.add_parser("run", help="run one paper at one tier")
    run.add_argument("paper")
    run.add_argument("--tier", default="cpu", help=f"one of {', '.join(TIER_NAMES)} (default cpu)")
    seeds = run.add_mutually_exclusive_group()
    seeds.add_argument("--seeds", type=POSITIVE, help="run seeds 0..N-1 (default: the tier's seed count)")
    seeds.add_argument("--seed", type=SEED, help="run this one seed")
    run.add_argument("--point", help="one point of the tier's experiment (default: every point)")
    run.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a hyper-parameter")
    run.add_argument("--device", default="auto", help="auto, cpu, cuda or mps")
    run.add_argument("--resume", action="store_true", help="continue from the last checkpoint of a killed run")
    run.add_argument("--wandb", action="store_true", help="also log to wandb (offline unless WANDB_MODE says otherwise)")
    run.add_argument("--threads", type=POSITIVE, help="torch threads (default: torch's choice)")
    run.add_argument("--quiet", action="store_true", help="no progress bars")
    run.add_argument("--pilot", action="store_true",
                     help="tag the record a pilot (a run that shaped the tier): kept and listed, never judged")
    run.set_defaults(func=cmd_run)

    check = sub.add_parser("check", help="judge expected.yaml against results/")
    check.add_argument("papers", nargs="*")
    check.add_argument("--tier", default="cpu")
    check.set_defaults(func=cmd_check)

    sub.add_parser("report", help="regenerate report/ from results/").set_defaults(func=cmd_report)

    reproduce = sub.add_parser("reproduce", help="run a paper's seeds afresh here, judge them, print the verdicts")
    reproduce.add_argument("paper")
    reproduce.add_argument("--tier", default="cpu")
    reproduce.add_argument("--workers", type=POSITIVE, default=3, help="runs side by side (default 3)")
    reproduce.add_argument("--results", type=Path, help="where the fresh records go (default local-results/)")
    reproduce.add_argument("--resume", action="store_true",
                           help="continue an interrupted reproduction: keep its finished runs, resume the others")
    reproduce.add_argument("--device", default="auto")
    reproduce.set_defaults(func=cmd_reproduce)

    export = sub.add_parser("export", help="every record as data: one row per run and metric")
    export.add_argument("--tier", default="cpu")
    export.add_argument("--format", default="csv", help="csv (default; to stdout without --out) or parquet")
    export.add_argument("--out", type=Path, help="the file to write")
    export.set_defaults(func=cmd_export)

    show = sub.add_parser("show", help="a paper's claim table, judged on the committed records")
    show.add_argument("paper")
    show.add_argument("--tier", default="cpu")
    show.set_defaults(func=cmd_show)

    sweep = sub.add_parser("sweep", help="fan out papers x seeds x configs")
    sweep.add_argument("papers", nargs="+")
    sweep.add_argument("--tier", default="cpu")
    sweep_seeds = sweep.add_mutually_exclusive_group()
    sweep_seeds.add_argument("--seeds", type=POSITIVE, help="seeds 0..N-1 (default: the tier's seed count)")
    sweep_seeds.add_argument("--seed", type=SEED, help="run this one seed")
    sweep.add_argument("--point", action="append", metavar="NAME", help="only these points (repeatable)")
    sweep.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    sweep.add_argument("--grid", action="append", default=[], metavar="KEY=V1,V2",
                       help="sweep a hyper-parameter over values")
    sweep.add_argument("--workers", type=POSITIVE, default=1)
    sweep.add_argument("--threads", type=POSITIVE, help="torch threads per run (default: cores / workers)")
    sweep.add_argument("--launcher", default="local", help="local (process pool) or slurm (submitit)")
    sweep.add_argument("--device", default="auto")
    sweep.add_argument("--pilot", action="store_true", help="tag every record a pilot: kept and listed, never judged")
    sweep.set_defaults(func=cmd_sweep)
    return parser


def main(argv: list[str] | None = None) -> int:
    from common.checks import ExpectedError
    from common.data import DatasetError
    if hasattr(signal, "SIGPIPE") and argv is None:  # `repro list | head` ends quietly
        signal.signal(signal.SIGPIPE, signal.SIG_DFL)
    try:
        args = build_parser().parse_args(argv)
        return args.func(args)
    except (UsageError, ExpectedError, DatasetError) as err:
        print(f"repro: error: {err}", file=sys.stderr)
        return EXIT_USAGE


if __name__ == "__main__":
    sys.exit(main())
