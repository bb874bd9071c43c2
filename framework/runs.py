"""Where runs live: ``<output_dir>/<method>/<run name>[_vN]/``.

train.py never overwrites a finished run: a second run of the same config gets
the next ``_vN`` folder. ``resume=true`` continues the newest one, and adapt.py
by default adapts the newest checkpoint of the newest one.
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import Optional

from framework.errors import UserError

CHECKPOINTS = "checkpoints"
LAST = "last.ckpt"
BEST = "best.ckpt"


def method_dir(cfg) -> Path:
    return Path(cfg.output_dir) / cfg.method


def run_dirs(cfg, run_name: str | None = None) -> list[Path]:
    """Existing run folders of this config (or of ``run_name``), oldest version first."""
    base = method_dir(cfg)
    if not base.is_dir():
        return []
    pattern = re.compile(re.escape(run_name or cfg.run_name) + r"(_v(\d+))?$")
    found = []
    for d in base.iterdir():
        m = pattern.fullmatch(d.name)
        if d.is_dir() and m:
            found.append((int(m.group(2) or 0), d))
    return [d for _, d in sorted(found)]


def new_run_dir(cfg) -> Path:
    existing = run_dirs(cfg)
    base = method_dir(cfg) / cfg.run_name
    if not existing:
        return base
    if not any((d / CHECKPOINTS).is_dir() for d in existing) and existing == [base]:
        return base  # an earlier attempt that never saved anything
    last = existing[-1].name
    m = re.search(r"_v(\d+)$", last)
    version = int(m.group(1)) + 1 if m and last != cfg.run_name else 1
    return method_dir(cfg) / f"{cfg.run_name}_v{version}"


def resume_target(cfg) -> tuple[Optional[Path], Optional[Path]]:
    """(run folder, checkpoint) to resume from, or (None, None) for a fresh run."""
    resume = cfg.resume
    if resume in (False, None, "false", "False", ""):
        return None, None
    if resume in (True, "true", "True"):
        for d in reversed(run_dirs(cfg)):
            ckpt = d / CHECKPOINTS / LAST
            if ckpt.is_file():
                return d, ckpt
        return None, None
    ckpt = Path(str(resume))
    if not ckpt.is_file():
        raise UserError(f"resume: checkpoint {ckpt} does not exist")
    run = ckpt.parent.parent if ckpt.parent.name == CHECKPOINTS else None
    return run, ckpt


def newest_checkpoint(cfg) -> Path:
    """The checkpoint adapt.py uses by default: the best (else last) of the newest run with one. An
    overlay renames the run (``quick+footage``) but seldom the model, so a run named after the
    overlays that trained nothing falls back to the run of the first config file (``quick``)."""
    names = [cfg.run_name] + ([cfg.run_name.split("+")[0]] if "+" in cfg.run_name else [])
    for run_name in names:
        for d in sorted(run_dirs(cfg, run_name), key=lambda p: p.stat().st_mtime, reverse=True):
            for name in (BEST, LAST):
                ckpt = d / CHECKPOINTS / name
                if ckpt.is_file():
                    return ckpt
    tried = "' or '".join(names)
    raise UserError(f"no checkpoint for run '{tried}' under {method_dir(cfg)}: "
                    f"run train.py with this config first, or pass ckpt=PATH")


def new_adapt_dir(cfg) -> Path:
    """adapt.py's run folder: next to the training runs, never overwriting an earlier report."""
    base = method_dir(cfg) / f"{cfg.run_name}_adapt"
    if not base.exists():
        return base
    version = 1
    while (method_dir(cfg) / f"{cfg.run_name}_adapt_v{version}").exists():
        version += 1
    return method_dir(cfg) / f"{cfg.run_name}_adapt_v{version}"
