"""Admin commands: `docstore-admin create-superuser`, `docstore-admin seed FILE...`.

They use MONGODB_URL, or the embedded server of DATA_DIR (attaching to it when
`scripts/serve` already runs it).
"""

import asyncio
import sys
from contextlib import nullcontext
from dataclasses import replace
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    DownloadColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    TextColumn,
    TimeRemainingColumn,
)

from api.config import Settings
from api.core import queue
from api.core.database import connect
from scripts.admin import superuser
from scripts.admin.batches import Options, Report
from scripts.admin.export import export, open_output, total
from scripts.admin.records import read_records
from scripts.admin.seeding import Seeder

app = typer.Typer(help="Docstore admin commands.", no_args_is_help=True, add_completion=False)
out = Console()
err = Console(stderr=True)


@app.command("create-superuser")
def create_superuser(
    email: Annotated[str, typer.Option(prompt=True, help="Email of the superuser")],
    username: Annotated[
        str | None, typer.Option(help="Username of a new account (asked for if missing)")
    ] = None,
    password: Annotated[
        str | None, typer.Option(help="Password of a new account (asked for, hidden, if missing)")
    ] = None,
    promote: Annotated[
        bool,
        typer.Option(
            "--promote",
            help="If an account with this email exists, make it a superuser "
            "(it keeps its owner's password) instead of refusing",
        ),
    ] = False,
) -> None:
    """Create a superuser. An existing account with this email is refused, or with
    --promote made a superuser as it is."""
    if found := superuser.problems(email, username, password):
        for problem in found:
            err.print(problem, markup=False, highlight=False)
        raise typer.Exit(2)
    outcome = asyncio.run(
        superuser.create_superuser(Settings(), email, username, password, promote, _ask)
    )
    (err if outcome.code else out).print(
        outcome.message, markup=False, highlight=False, soft_wrap=True
    )
    raise typer.Exit(outcome.code)


def _ask(what: str, hidden: bool) -> str:
    answer: str = typer.prompt(what, hide_input=hidden, confirmation_prompt=hidden)
    return answer


@app.command()
def seed(
    files: Annotated[list[Path], typer.Argument(exists=True, dir_okay=False, readable=True)],
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Validate only; write nothing")
    ] = False,
    strict: Annotated[
        bool, typer.Option("--strict", help="Write nothing unless every record is valid")
    ] = False,
    overwrite: Annotated[
        bool,
        typer.Option(
            "--overwrite",
            help="Set existing users' given fields and replace existing items wholesale, "
            "even where they changed since they were seeded",
        ),
    ] = False,
    promote: Annotated[
        bool,
        typer.Option(
            "--promote",
            help="Let a record with is_superuser: true make an existing account a superuser",
        ),
    ] = False,
    batch_size: Annotated[int, typer.Option(min=1, max=10_000)] = 500,
) -> None:
    """Import users and items from JSON arrays or NDJSON. Safe to re-run: what changed
    since it was seeded is kept unless --overwrite."""
    settings = Settings()
    options = Options(
        settings.bcrypt_rounds,
        dry_run,
        overwrite,
        promote,
        batch_size,
        settings.history_max_versions,
    )
    report = asyncio.run(_seed(settings, files, strict, options))
    for line in report.notice_lines():
        out.print(line, markup=False, highlight=False, soft_wrap=True)
    for line in report.error_lines():
        err.print(line, markup=False, highlight=False, soft_wrap=True)
    verb = "would write" if dry_run else "wrote"
    kept = f"kept {report.kept} as stored (changed since seeded); " if report.kept else ""
    out.print(
        f"{report.valid} valid records; {verb} {report.written['user']} users and "
        f"{report.written['item']} items; {kept}{len(report.errors)} errors."
    )
    if report.errors:
        raise typer.Exit(1)


async def _seed(settings: Settings, files: list[Path], strict: bool, options: Options) -> Report:
    async with connect(settings):
        if strict and not options.dry_run:
            check = await _run_seeder(files, replace(options, dry_run=True))
            if check.errors:
                return check
        return await _run_seeder(files, options)


async def _run_seeder(files: list[Path], options: Options) -> Report:
    seeder = Seeder(options)
    with _progress(DownloadColumn()) as progress:
        for path in files:
            task = progress.add_task(path.name, total=path.stat().st_size)
            for raw in read_records(path):
                await seeder.add(raw)
                progress.advance(task, raw.size)
        await seeder.flush()
    return seeder.report


@app.command("export")
def export_command(
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="File (default stdout)")
    ] = None,
    users: Annotated[bool, typer.Option(help="Export users")] = True,
    items: Annotated[bool, typer.Option(help="Export items")] = True,
    with_hashes: Annotated[
        bool,
        typer.Option(
            "--with-hashes",
            help="Include password hashes (needed to log in); the file is made mode 0600",
        ),
    ] = False,
) -> None:
    """Write users and items as NDJSON that `seed` re-imports as they were."""
    counts = asyncio.run(_export(Settings(), output, users, items, with_hashes))
    err.print(f"Exported {counts['user']} users and {counts['item']} items.")


async def _export(
    settings: Settings, output: Path | None, users: bool, items: bool, with_hashes: bool
) -> dict[str, int]:
    async with connect(settings):
        expected = await total(users, items)
        with (
            _progress(MofNCompleteColumn()) as progress,
            open_output(output, with_hashes) if output else nullcontext(sys.stdout) as out,
        ):
            task = progress.add_task("export", total=expected)
            return await export(out, users, items, with_hashes, lambda n: progress.advance(task, n))


@app.command()
def outbox(
    retry_dead: Annotated[
        bool, typer.Option("--retry-dead", help="Queue dead messages for delivery again")
    ] = False,
) -> None:
    """Show the email outbox by status; optionally retry the dead messages."""
    counts, retried = asyncio.run(_outbox(Settings(), retry_dead))
    for status, count in counts.items():
        out.print(f"{status:<8} {count}")
    if retry_dead:
        out.print(f"Queued {retried} dead messages again.")


async def _outbox(settings: Settings, retry_dead: bool) -> tuple[dict[str, int], int]:
    async with connect(settings):
        retried = await queue.retry_dead() if retry_dead else 0
        return await queue.counts_by_status(), retried


def _progress(counter: ProgressColumn) -> Progress:
    """A progress bar on stderr, shown only on a terminal (never in logs or pipes)."""
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        counter,
        TimeRemainingColumn(),
        console=err,
        disable=not sys.stderr.isatty(),
    )
