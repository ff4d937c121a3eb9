"""``trustroot release`` (publish signed images over TUF) and ``trustroot rollout`` (staged rollouts).

Two Typer groups: :data:`app` (``release publish|list|root``) and :data:`rollout_app`
(``rollout start|status|pause|resume|abort|advance``). Both work on the fleet store named by
``--database`` (default: the product's ``.trustroot/fleet.sqlite``, migrated on open).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from trustroot.cli._common import (
    ContextOpt,
    DatabaseOpt,
    FormatOpt,
    JsonOpt,
    Output,
    QuietOpt,
    command,
    open_product_for_cli,
)
from trustroot.fleet.service import product_service

if TYPE_CHECKING:
    from trustroot.fleet.rollouts import RolloutView

__all__ = ["app", "rollout_app"]

app = typer.Typer(no_args_is_help=True, help="Signed releases over TUF: publish, list, export the trusted root.")
rollout_app = typer.Typer(
    no_args_is_help=True, help="Staged rollouts of a release: start, status, pause, resume, abort."
)


# --- release ---------------------------------------------------------------------------------------


@command(app, "publish")
def publish(
    image: Annotated[Path, typer.Argument(help="The signed MCUboot image (from 'trustroot image sign').")],
    channel: Annotated[str, typer.Option("--channel", help="Update channel, one of [update] channels.")] = "stable",
    name: Annotated[str | None, typer.Option("--name", help="Release name (default: the model, as a slug).")] = None,
    database: DatabaseOpt = None,
    context: ContextOpt = None,
    quiet: QuietOpt = False,
    json_: JsonOpt = False,
) -> int:
    """Verify a signed image and publish it as a TUF target on a channel.

    Refuses an image that does not verify under the product's firmware-signing keys (5.3-10) and a
    security counter below the channel's highest (5.3-7). The first publish creates the TUF
    repository, signing its root with the offline update-root key (TRUSTROOT_ROOT_PASSPHRASE).
    Recorded as release.published in the product's evidence log.

    Example: trustroot release publish build/plug-1.2.0.signed.bin --channel stable
    """
    from trustroot.fleet.releases.publish import publish_release

    out = Output.of(json_flag=json_, quiet=quiet)
    product = open_product_for_cli(context)
    with product_service(product, database) as service:
        done = publish_release(product, image, channel=channel, store=service.store, name=name)
    release = done.release
    if done.already_published:
        text = f"already published: release {release.id} {release.target_path} (nothing changed)"
    else:
        roles = ", ".join(f"{entry['role']} v{entry['version']}" for entry in done.tuf)
        text = (
            f"[green]published[/green] release {release.id}: {release.target_path}\n"
            f"  version {release.version}, security counter {release.security_counter}, "
            f"{release.size} bytes, sha256 {release.sha256[:16]}…\n"
            f"  TUF: {roles}" + ("\n  (TUF repository created: root v1 signed)" if done.created_repository else "")
        )
    out.result(text, done.as_dict())
    return 0


@command(app, "list")
def list_releases(
    channel: Annotated[str | None, typer.Option("--channel", help="Only this channel.")] = None,
    database: DatabaseOpt = None,
    context: ContextOpt = None,
    quiet: QuietOpt = False,
    json_: JsonOpt = False,
    fmt: FormatOpt = "text",
) -> int:
    """List published releases, newest first, and the TUF metadata's versions and expiry.

    Example: trustroot release list --channel stable
    """
    from trustroot.fleet import rollouts
    from trustroot.fleet.releases.publish import open_repository, repository_path
    from trustroot.fleet.releases.repository import ReleaseRepository

    out = Output.of(json_flag=json_, quiet=quiet, fmt=fmt)
    product = open_product_for_cli(context)
    with product_service(product, database) as service:
        releases = rollouts.list_releases(service, channel=channel)
    tuf: list[dict[str, Any]] = []
    if ReleaseRepository.exists(repository_path(product)):
        repo, _ = open_repository(product)
        tuf = [
            {"role": s.role, "version": s.version, "expires": s.expires.isoformat().replace("+00:00", "Z")}
            for s in repo.status()
        ]
    lines = [f"{'id':>4}  {'channel':<10} {'version':<14} {'counter':>7}  {'size':>9}  published", "-" * 72]
    lines += [
        f"{r.id:>4}  {r.channel:<10} {r.version:<14} {r.security_counter:>7}  {r.size:>9}  "
        f"{r.published_at.isoformat(timespec='seconds')}"
        for r in releases
    ]
    if not releases:
        lines.append("(no release published)")
    if tuf:
        lines.append("TUF: " + ", ".join(f"{t['role']} v{t['version']} (expires {t['expires']})" for t in tuf))
    out.result("\n".join(lines), {"releases": [r.as_dict() for r in releases], "tuf": tuf})
    return 0


@command(app, "root")
def export_root(
    output: Annotated[Path | None, typer.Option("--output", "-o", help="Write it here (default: stdout).")] = None,
    resign: Annotated[
        bool,
        typer.Option(
            "--resign",
            help="First sign a new root version with the offline update-root key: after rotating an update "
            "key, or to extend root's expiry (365 days from now).",
        ),
    ] = False,
    context: ContextOpt = None,
    quiet: QuietOpt = False,
    json_: JsonOpt = False,
) -> int:
    """Print (or write) the TUF root metadata devices trust: give it to every device at provisioning.

    With --resign, a new root version is signed first (TRUSTROOT_ROOT_PASSPHRASE); devices follow it
    from the root they hold.

    Example: trustroot release root --output root.json
    """
    from trustroot._fsutil import atomic_write
    from trustroot.fleet.releases.publish import open_repository

    out = Output.of(json_flag=json_, quiet=quiet)
    product = open_product_for_cli(context)
    repo, _ = open_repository(product)
    if resign:
        version = repo.update_root(product.keys, product.clock(), renew=True)
        out.info(f"signed TUF root v{version} (expires in {repo.expiry.root.days} days)")
    data = repo.root_bytes()
    if output is not None:
        atomic_write(output, data, mode=0o644)
        out.result(
            f"wrote TUF root v{repo.root_version()} to {output}", {"path": str(output), "version": repo.root_version()}
        )
    else:  # the metadata is JSON already: written as is (no markup rendering), in either format
        sys.stdout.write(data.decode("utf-8") + "\n")
    return 0


# --- rollout ---------------------------------------------------------------------------------------


def _render(view: RolloutView) -> str:
    stages = " → ".join(f"{s.percent:g}%" for s in view.stages)
    lines = [
        f"rollout {view.id}: {view.release.target_path} (release {view.release.id}, counter "
        f"{view.release.security_counter}) on {view.channel}" + (f", group {view.group}" if view.group else ""),
        f"  state {view.state.value}, stage {view.stage_index + 1}/{len(view.stages)} at {view.percent:g}% ({stages})",
        f"  offered {view.offered}, installed {view.succeeded}, failed {view.failed}; "
        f"failure share {view.failure_share:.1%} (pauses at {view.failure_threshold:.1%} once "
        f"{view.min_sample} offered)",
    ]
    if view.next_stage_at is not None:
        lines.append(f"  next stage at {view.next_stage_at.isoformat(timespec='seconds')}")
    if view.reason:
        lines.append(f"  reason: {view.reason}")
    return "\n".join(lines)


@command(rollout_app, "start")
def start(
    release_id: Annotated[int, typer.Argument(help="The release id (see 'trustroot release list').")],
    group: Annotated[str | None, typer.Option("--group", help="Only devices of this group.")] = None,
    database: DatabaseOpt = None,
    context: ContextOpt = None,
    quiet: QuietOpt = False,
    json_: JsonOpt = False,
) -> int:
    """Start a staged rollout of a release in the stages of [update] rollout_stages.

    An active or paused rollout on the same channel and group is superseded. Recorded as
    rollout.changed in the fleet's audit chain.

    Example: trustroot rollout start 3
    """
    from trustroot.fleet.rollouts import start_rollout

    out = Output.of(json_flag=json_, quiet=quiet)
    product = open_product_for_cli(context)
    with product_service(product, database) as service:
        view = start_rollout(service, release_id, actor=product.actor, group=group)
    out.result(_render(view), view.as_dict())
    return 0


@command(rollout_app, "status")
def status(
    rollout_id: Annotated[int | None, typer.Argument(help="One rollout (default: every active or paused one).")] = None,
    all_: Annotated[bool, typer.Option("--all", help="Also finished (aborted, superseded) rollouts.")] = False,
    database: DatabaseOpt = None,
    context: ContextOpt = None,
    quiet: QuietOpt = False,
    json_: JsonOpt = False,
    fmt: FormatOpt = "text",
) -> int:
    """Show rollouts: state, stage, offers, installs, failures and when the next stage begins.

    Example: trustroot rollout status --json
    """
    from trustroot.fleet.rollouts import get_rollout, list_rollouts

    out = Output.of(json_flag=json_, quiet=quiet, fmt=fmt)
    product = open_product_for_cli(context)
    with product_service(product, database) as service:
        views = (
            [get_rollout(service, rollout_id)]
            if rollout_id is not None
            else list_rollouts(service, active_only=not all_)
        )
    text = "\n".join(_render(view) for view in views) or "(no rollout)"
    out.result(text, [view.as_dict() for view in views])
    return 0


def _action(name: str, rollout_id: int, database: str | None, context: Path | None, out: Output, **extra: Any) -> int:
    from trustroot.fleet import rollouts

    function = {
        "pause": rollouts.pause_rollout,
        "resume": rollouts.resume_rollout,
        "abort": rollouts.abort_rollout,
        "advance": rollouts.advance_rollout,
    }[name]
    product = open_product_for_cli(context)
    with product_service(product, database) as service:
        view = function(service, rollout_id, actor=product.actor, **extra)
    out.result(_render(view), view.as_dict())
    return 0


RolloutId = Annotated[int, typer.Argument(help="The rollout id (see 'trustroot rollout status').")]
ReasonOpt = Annotated[str | None, typer.Option("--reason", help="Why (kept in the audit record).")]


@command(rollout_app, "pause")
def pause(
    rollout_id: RolloutId,
    reason: ReasonOpt = None,
    database: DatabaseOpt = None,
    context: ContextOpt = None,
    quiet: QuietOpt = False,
    json_: JsonOpt = False,
) -> int:
    """Pause a rollout: no new device is offered its release until it is resumed.

    Example: trustroot rollout pause 1 --reason "support calls about reboots"
    """
    return _action("pause", rollout_id, database, context, Output.of(json_flag=json_, quiet=quiet), reason=reason)


@command(rollout_app, "resume")
def resume(
    rollout_id: RolloutId,
    database: DatabaseOpt = None,
    context: ContextOpt = None,
    quiet: QuietOpt = False,
    json_: JsonOpt = False,
) -> int:
    """Resume a paused rollout; its failure window and the stage's minimum time start again.

    Example: trustroot rollout resume 1
    """
    return _action("resume", rollout_id, database, context, Output.of(json_flag=json_, quiet=quiet))


@command(rollout_app, "abort")
def abort(
    rollout_id: RolloutId,
    reason: ReasonOpt = None,
    database: DatabaseOpt = None,
    context: ContextOpt = None,
    quiet: QuietOpt = False,
    json_: JsonOpt = False,
) -> int:
    """Abort a rollout for good: its release is offered to no device again.

    Example: trustroot rollout abort 1 --reason "boot loop on rev B hardware"
    """
    return _action("abort", rollout_id, database, context, Output.of(json_flag=json_, quiet=quiet), reason=reason)


@command(rollout_app, "advance")
def advance(
    rollout_id: RolloutId,
    database: DatabaseOpt = None,
    context: ContextOpt = None,
    quiet: QuietOpt = False,
    json_: JsonOpt = False,
) -> int:
    """Start a rollout's next stage now, before its minimum time has passed.

    Example: trustroot rollout advance 1
    """
    return _action("advance", rollout_id, database, context, Output.of(json_flag=json_, quiet=quiet))
