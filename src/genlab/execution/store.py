"""The results store: one SQLite file per output folder, safe against crashes and concurrency.

Tables: ``runs`` (one row per run spec hash: spec, status, final metrics, timings, versions),
``curves`` (one row per evaluation of a run), ``tasks`` (computations other than training, with
a JSON result), ``experiments`` and ``experiment_runs`` (which runs and tasks an experiment
invocation asked for). SQLite in WAL mode makes every commit atomic and
durable against a killed process, and serialises writers from several processes; a run's
result and its curves are written in one transaction, so a run is either fully there or absent.
Training checkpoints live beside the database in ``checkpoints/``.
"""

from __future__ import annotations

import json
import os
import socket
import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from genlab.errors import GenlabError
from genlab.execution.files import atomic_write, owned_dir
from genlab.validation import check_path

DB_NAME = "genlab.sqlite"
STORE_VERSION = 1
#: A claimed run whose owner has not written a heartbeat for this long is taken over.
STALE_AFTER_S = 600.0
#: A training process renews its lease this often (seconds), from a thread, whatever its epochs
#: or checkpoints take.
HEARTBEAT_EVERY_S = 60.0

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS runs (
    hash TEXT PRIMARY KEY,
    spec TEXT NOT NULL,
    status TEXT NOT NULL,          -- running | done | diverged | error
    reason TEXT,
    owner TEXT, heartbeat REAL,
    started REAL, finished REAL, wall_time_s REAL,
    device TEXT, versions TEXT,
    train_acc REAL, test_acc REAL, train_loss REAL, test_loss REAL,
    best_test_acc REAL,
    steps INTEGER, epochs INTEGER, steps_to_fit INTEGER,
    labels_changed INTEGER, n_train INTEGER, n_test INTEGER, n_params INTEGER,
    extra TEXT
);
CREATE TABLE IF NOT EXISTS curves (
    hash TEXT NOT NULL, step INTEGER NOT NULL, epoch INTEGER, lr REAL,
    train_loss REAL, train_acc REAL, test_loss REAL, test_acc REAL,
    running_loss REAL, seconds REAL,
    PRIMARY KEY (hash, step)
);
CREATE TABLE IF NOT EXISTS tasks (
    hash TEXT PRIMARY KEY, kind TEXT NOT NULL, params TEXT NOT NULL,
    status TEXT NOT NULL, reason TEXT, owner TEXT, heartbeat REAL,
    started REAL, finished REAL, wall_time_s REAL, versions TEXT, result TEXT
);
CREATE TABLE IF NOT EXISTS experiments (
    name TEXT PRIMARY KEY, args TEXT NOT NULL, updated REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS experiment_runs (
    experiment TEXT NOT NULL, hash TEXT NOT NULL, PRIMARY KEY (experiment, hash)
);
CREATE TABLE IF NOT EXISTS invocations (
    id INTEGER PRIMARY KEY AUTOINCREMENT, experiment TEXT NOT NULL, args TEXT NOT NULL,
    started REAL NOT NULL, versions TEXT
);
"""

#: ``PRAGMA application_id`` of every store genlab creates ("GNLB"): a SQLite file without it
#: (and without a genlab store's tables) is someone else's, and genlab never writes to it.
APPLICATION_ID = 0x474E4C42

RESULT_COLUMNS = (
    "train_acc", "test_acc", "train_loss", "test_loss", "best_test_acc", "steps", "epochs",
    "steps_to_fit", "labels_changed", "n_train", "n_test", "n_params",
)
CURVE_COLUMNS = ("step", "epoch", "lr", "train_loss", "train_acc", "test_loss", "test_acc",
                 "running_loss", "seconds")


def owner_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


class Store:
    """A results folder. ``Store.create(out)`` makes one; ``Store.open(out)`` requires one."""

    def __init__(self, root: Path):
        self.root = root
        self.path = root / DB_NAME
        self.checkpoints = root / "checkpoints"

    # -- opening ------------------------------------------------------------------------------
    @classmethod
    def create(cls, root: str | Path) -> Store:
        """Open ``root`` as a store, creating the folder and database if needed."""
        root = check_path(root, "the output folder (--out)")
        if root.exists() and not root.is_dir():
            raise GenlabError(
                f"output path {root} exists and is not a folder; choose another --out")
        try:
            root.mkdir(parents=True, exist_ok=True)
            probe = root / f".write-test-{os.getpid()}-{time.monotonic_ns()}"
            os.close(os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL
                             | getattr(os, "O_NOFOLLOW", 0), 0o600))
            probe.unlink()
        except OSError as e:
            raise GenlabError(
                f"cannot write to output folder {root}: {e.strerror or e}; choose a writable --out"
            ) from None
        store = cls(root)
        if store.path.is_symlink():
            raise GenlabError(f"{store.path} is a symbolic link; genlab writes only a store it "
                              "created: remove the link or choose another --out")
        if store.path.exists() and store.path.stat().st_size > 0:
            store._check_ours(for_writing=True)
        try:
            db = sqlite3.connect(store.path, timeout=60.0, isolation_level=None)
            try:
                db.execute(f"PRAGMA application_id = {APPLICATION_ID}")
                _configure(db)
                db.executescript(_SCHEMA)
                db.execute("INSERT OR IGNORE INTO meta VALUES ('store_version', ?)",
                           (str(STORE_VERSION),))
            finally:
                db.close()
        except sqlite3.Error as e:
            raise GenlabError(f"cannot write the results store {store.path}: {e}; check the "
                              "disk and permissions of --out") from None
        return store

    @classmethod
    def open(cls, root: str | Path) -> Store:
        """Open an existing genlab results folder, or raise a one-line error."""
        root = check_path(root, "the results folder")
        store = cls(root)
        if not root.is_dir():
            raise GenlabError(f"{root} is not a folder; pass a genlab output folder (--out of run)")
        if not store.path.is_file():
            raise GenlabError(
                f"{root} is not a genlab results folder (no {DB_NAME}); pass the --out of a run"
            )
        store._check_ours(for_writing=False)
        return store

    def _check_ours(self, *, for_writing: bool) -> None:
        """Refuse a SQLite file genlab did not create, before anything is changed in it.

        It is read through a read-only connection: its application id must be genlab's, or
        (a store of genlab 0.1.0, made before the mark) it must hold a genlab ``meta`` table.
        """
        what = "choose another --out" if for_writing else "pass the --out of a genlab run"
        try:
            db = sqlite3.connect(f"{self.path.resolve().as_uri()}?mode=ro", uri=True,
                                 timeout=60.0)
            try:
                app = db.execute("PRAGMA application_id").fetchone()[0]
                legacy = app == 0 and db.execute(
                    "SELECT value FROM meta WHERE key='store_version'").fetchone() is not None
            finally:
                db.close()
        except sqlite3.DatabaseError:
            app, legacy = None, False
        if app != APPLICATION_ID and not legacy:
            raise GenlabError(f"{self.path} is not a readable genlab store (a file genlab did "
                              f"not create); genlab leaves it untouched: {what}")

    def _connect(self) -> sqlite3.Connection:
        # mode=rw: never create the database here, so a store deleted under a live run is not
        # recreated empty by that run (Store.create is the one place that creates it)
        try:
            db = sqlite3.connect(f"{self.path.resolve().as_uri()}?mode=rw", uri=True,
                                 timeout=60.0, isolation_level=None)
        except sqlite3.OperationalError as e:
            raise GenlabError(f"cannot open the results store {self.path} ({e}); was the "
                              "folder deleted? Run the command again to start it anew") from None
        _configure(db)
        return db

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        # BEGIN IMMEDIATE takes the write lock up front, so read-then-write is atomic across
        # processes (the claim of a run cannot be raced).
        db = self._connect()
        try:
            db.execute("BEGIN IMMEDIATE")
            yield db
            db.execute("COMMIT")
        except sqlite3.OperationalError as e:  # disk full, read-only file, store deleted
            if db.in_transaction:
                try:
                    db.execute("ROLLBACK")
                except sqlite3.Error:
                    pass  # SQLite rolled back already; the original error is the one to report
            raise GenlabError(f"cannot write the results store {self.path}: {e}; free space "
                              "or fix the permissions of --out, then run the command again"
                              ) from None
        except BaseException:
            if db.in_transaction:  # SQLite may have rolled back already (e.g. disk full)
                try:
                    db.execute("ROLLBACK")
                except sqlite3.Error:
                    pass  # the original error is the one to report
            raise
        finally:
            db.close()

    # -- experiments --------------------------------------------------------------------------
    def record_experiment(self, name: str, args: dict[str, Any], hashes: list[str],
                          versions: dict[str, str] | None = None) -> None:
        """Remember an invocation of experiment ``name`` (with ``args``) asking for ``hashes``.

        An experiment's runs are those of all its invocations on this folder (seeds 0, then
        seeds 1: the report shows both); ``experiments`` keeps the latest arguments and
        ``invocations`` every invocation's.
        """
        text = json.dumps(args, sort_keys=True, default=str)
        now = time.time()
        with self._tx() as db:
            db.execute("INSERT OR REPLACE INTO experiments VALUES (?, ?, ?)", (name, text, now))
            db.executemany("INSERT OR IGNORE INTO experiment_runs VALUES (?, ?)",
                           [(name, h) for h in hashes])
            db.execute("INSERT INTO invocations (experiment, args, started, versions) "
                       "VALUES (?, ?, ?, ?)", (name, text, now, json.dumps(versions or {})))

    def record_config(self, text: str) -> Path:
        """Keep one invocation's resolved config file (TOML) as ``configs/<time>-<pid>-*.toml``:
        every invocation's, so a folder says how each of its sweeps was asked for."""
        folder = owned_dir(self.root / "configs")
        stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime())
        # several invocations in one second and process (the Python API) keep one file each
        name = f"{stamp}-{os.getpid()}-{time.monotonic_ns() % 10**9:09d}.toml"
        return atomic_write(folder / name, text.encode())

    def experiments(self) -> dict[str, dict[str, Any]]:
        with self._connect() as db:
            rows = db.execute("SELECT name, args FROM experiments ORDER BY updated").fetchall()
        return {name: json.loads(args) for name, args in rows}

    def invocations(self, experiment: str | None = None) -> list[dict[str, Any]]:
        """Every recorded invocation (oldest first): experiment, args, start time, versions."""
        q, a = "SELECT experiment, args, started, versions FROM invocations", ()
        if experiment is not None:
            q, a = q + " WHERE experiment = ?", (experiment,)
        with self._connect() as db:
            if not db.execute("SELECT 1 FROM sqlite_master WHERE name='invocations'").fetchone():
                return []  # a store written by genlab 0.1.0
            rows = db.execute(q + " ORDER BY id", a).fetchall()
        return [{"experiment": e, "args": json.loads(x), "started": t,
                 "versions": json.loads(v or "{}")} for e, x, t, v in rows]

    # -- runs ---------------------------------------------------------------------------------
    def status(self, run_hash: str) -> str | None:
        with self._connect() as db:
            row = db.execute("SELECT status FROM runs WHERE hash = ?", (run_hash,)).fetchone()
        return row[0] if row else None

    def claim(self, run_hash: str, spec_json: str, *, retry_failed: bool = False) -> bool:
        """Atomically take a run to train. False if it is finished or another live process has it.

        A run marked ``running`` by a process that no longer exists (same host) or has not
        written a heartbeat for ``STALE_AFTER_S`` is taken over: that is how a killed sweep
        resumes.
        """
        now = time.time()
        me = owner_id()
        with self._tx() as db:
            row = db.execute("SELECT status, owner, heartbeat FROM runs WHERE hash = ?",
                             (run_hash,)).fetchone()
            if not _claimable(row, me, now, retry_failed):
                return False
            db.execute(
                "INSERT INTO runs (hash, spec, status, owner, heartbeat, started) "
                "VALUES (?, ?, 'running', ?, ?, ?) ON CONFLICT(hash) DO UPDATE SET "
                "status='running', reason=NULL, owner=excluded.owner, "
                "heartbeat=excluded.heartbeat, started=excluded.started",
                (run_hash, spec_json, me, now, now),
            )
        return True

    def heartbeat(self, run_hash: str, *, table: str = "runs") -> None:
        """Renew this process's lease on a claimed run (or task, ``table="tasks"``)."""
        if table not in ("runs", "tasks"):
            raise ValueError(f"table must be runs or tasks, got {table!r}")
        with self._tx() as db:
            db.execute(f"UPDATE {table} SET heartbeat = ? WHERE hash = ? AND owner = ?",
                       (time.time(), run_hash, owner_id()))

    @contextmanager
    def lease(self, hashes: list[str], *, table: str = "runs",
              every_s: float | None = None) -> Iterator[None]:
        """Renew the lease on ``hashes`` from a background thread while the block runs.

        A run is taken over by another process only when its heartbeat is older than
        :data:`STALE_AFTER_S`; renewing by time (every :data:`HEARTBEAT_EVERY_S`), not at
        checkpoints, keeps a live run with long epochs from being trained twice.
        """
        stop = threading.Event()
        period = HEARTBEAT_EVERY_S if every_s is None else every_s

        def beat() -> None:
            while not stop.wait(period):
                for h in hashes:
                    try:
                        self.heartbeat(h, table=table)
                    except (sqlite3.Error, GenlabError):
                        pass  # a missed beat is retried; the run itself reports real faults

        thread = threading.Thread(target=beat, name="genlab-lease", daemon=True)
        thread.start()
        try:
            yield
        finally:
            stop.set()
            thread.join()

    def finish(self, run_hash: str, *, status: str, reason: str, metrics: dict[str, Any],
               curves: list[dict[str, float]], device: str, versions: dict[str, str],
               wall_time_s: float, extra: dict[str, Any] | None = None) -> None:
        """Write a run's result and all its curves in one transaction."""
        cols = [c for c in RESULT_COLUMNS if c in metrics]
        sets = ", ".join(f"{c} = ?" for c in cols)
        with self._tx() as db:
            db.execute(
                f"UPDATE runs SET status = ?, reason = ?, finished = ?, wall_time_s = ?, "
                f"device = ?, versions = ?, extra = ?, owner = NULL{', ' if cols else ''}{sets} "
                f"WHERE hash = ?",
                (status, reason, time.time(), wall_time_s, device, json.dumps(versions),
                 json.dumps(extra or {}), *[metrics[c] for c in cols], run_hash),
            )
            db.execute("DELETE FROM curves WHERE hash = ?", (run_hash,))
            db.executemany(
                f"INSERT OR REPLACE INTO curves (hash, {', '.join(CURVE_COLUMNS)}) "
                f"VALUES (?, {', '.join('?' * len(CURVE_COLUMNS))})",
                [(run_hash, *[row.get(c) for c in CURVE_COLUMNS]) for row in curves],
            )

    def fail(self, run_hash: str, reason: str) -> None:
        """Mark a run as errored (it will be retried by the next sweep)."""
        with self._tx() as db:
            db.execute("UPDATE runs SET status = 'error', reason = ?, owner = NULL "
                       "WHERE hash = ?", (reason, run_hash))

    def release(self, run_hash: str) -> None:
        """Give a claimed run back (e.g. on Ctrl-C) so the next sweep resumes it at once."""
        with self._tx() as db:
            db.execute("UPDATE runs SET status = 'error', reason = 'interrupted', owner = NULL "
                       "WHERE hash = ? AND status = 'running'", (run_hash,))

    # -- tasks --------------------------------------------------------------------------------
    def claim_task(self, task_hash: str, kind: str, params_json: str) -> bool:
        """Like :meth:`claim`, for a task."""
        now, me = time.time(), owner_id()
        with self._tx() as db:
            row = db.execute("SELECT status, owner, heartbeat FROM tasks WHERE hash = ?",
                             (task_hash,)).fetchone()
            if not _claimable(row, me, now, False):
                return False
            db.execute(
                "INSERT INTO tasks (hash, kind, params, status, owner, heartbeat, started) "
                "VALUES (?, ?, ?, 'running', ?, ?, ?) ON CONFLICT(hash) DO UPDATE SET "
                "status='running', reason=NULL, owner=excluded.owner, "
                "heartbeat=excluded.heartbeat, started=excluded.started",
                (task_hash, kind, params_json, me, now, now))
        return True

    def finish_task(self, task_hash: str, *, status: str, reason: str, result: dict[str, Any],
                    versions: dict[str, str], wall_time_s: float) -> None:
        with self._tx() as db:
            db.execute("UPDATE tasks SET status = ?, reason = ?, result = ?, versions = ?, "
                       "wall_time_s = ?, finished = ?, owner = NULL WHERE hash = ?",
                       (status, reason, json.dumps(result), json.dumps(versions), wall_time_s,
                        time.time(), task_hash))

    def tasks(self, experiment: str | None = None) -> list[dict[str, Any]]:
        """Task rows, all or those ``experiment`` asked for."""
        return self._select("tasks", experiment)

    # -- reading ------------------------------------------------------------------------------
    def training(self) -> list[str]:
        """Hashes of the runs some live process is training now (claimed, heartbeat fresh)."""
        now = time.time()
        with self._connect() as db:
            rows = db.execute("SELECT hash, owner, heartbeat FROM runs WHERE status = 'running'"
                              ).fetchall()
        return [h for h, owner, beat in rows if _alive(owner, beat, now)]

    def runs(self, experiment: str | None = None) -> list[dict[str, Any]]:
        """Run rows, all or those ``experiment`` asked for."""
        return self._select("runs", experiment)

    def _select(self, table: str, experiment: str | None) -> list[dict[str, Any]]:
        q, args = f"SELECT * FROM {table}", ()
        if experiment is not None:
            q += " WHERE hash IN (SELECT hash FROM experiment_runs WHERE experiment = ?)"
            args = (experiment,)
        with self._connect() as db:
            db.row_factory = sqlite3.Row
            return [dict(r) for r in db.execute(q + " ORDER BY started", args)]

    def curves(self, hashes: list[str] | None = None) -> list[dict[str, Any]]:
        with self._connect() as db:
            db.row_factory = sqlite3.Row
            rows = [dict(r) for r in db.execute("SELECT * FROM curves ORDER BY hash, step")]
        if hashes is not None:
            keep = set(hashes)
            rows = [r for r in rows if r["hash"] in keep]
        return rows

    def checkpoint_path(self, run_hash: str) -> Path:
        return self.checkpoints / f"{run_hash}.safetensors"

    def model_path(self, run_hash: str) -> Path:
        """Final weights of a finished run (safetensors)."""
        return self.root / "models" / f"{run_hash}.safetensors"


def _claimable(row: tuple | None, me: str, now: float, retry_failed: bool) -> bool:
    if row is None:
        return True
    status, owner, beat = row
    if status == "done" or (status == "diverged" and not retry_failed):
        return False
    return not (status == "running" and owner != me and _alive(owner, beat, now))


def _alive(owner: str | None, heartbeat: float | None, now: float) -> bool:
    if not owner or heartbeat is None or now - heartbeat > STALE_AFTER_S:
        return False
    host, _, pid = owner.rpartition(":")
    if host == socket.gethostname():
        try:
            os.kill(int(pid), 0)
        except ProcessLookupError:
            return False
        except (PermissionError, ValueError):
            return True
    return True


def _configure(db: sqlite3.Connection) -> None:
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=NORMAL")
    db.execute("PRAGMA busy_timeout=60000")
