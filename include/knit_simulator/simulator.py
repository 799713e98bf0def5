"""The simulator's state: integrations' data sets, sync jobs and runs, and how a run is executed."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import Coroutine, Iterable
from typing import Any

from knit_simulator.config import SimConfig
from knit_simulator.dataset import IntegrationData
from knit_simulator.delivery import RunDelivery, Sender
from knit_simulator.delta import RECORD_DELETED, RECORD_NEW
from knit_simulator.events import EVENT_ACTIVATE, Outgoing, activation_event, record_events
from knit_simulator.http_client import Target
from knit_simulator.render import Renderer
from knit_simulator.render_jobs import JobRenderer
from knit_simulator.rng import EventIds, random_id, stable_hash
from knit_simulator.runs import (
    ACTIVATION,
    API,
    DELIVERED,
    FAILED,
    GAVE_UP,
    RUNNING,
    SCHEDULE,
    Job,
    Notice,
    Run,
    StartCall,
    now_ms,
)
from knit_simulator.sources import ATS_JOBS, SIMULATED_MODELS, Applications, Jobs, Source

log = logging.getLogger(__name__)

INITIAL_SYNC = "initial_sync"
DELTA_SYNC = "delta_sync"


class Simulator:
    """Everything the simulator holds; the HTTP layer (``api.py``) only calls its methods."""

    def __init__(self, config: SimConfig) -> None:
        self.config = config
        self.integrations: dict[str, IntegrationData] = {}
        self.renderers: dict[str, Renderer] = {}
        self.job_renderers: dict[str, JobRenderer] = {}
        self.jobs: dict[str, Job] = {}
        self.job_by_key: dict[tuple[str, str], Job] = {}
        self.runs: dict[str, Run] = {}
        self.notices: dict[str, Notice] = {}
        self.starts: list[StartCall] = []  # every sync.start call received, in order
        self.connected: set[str] = set()  # integrations activated without validation errors
        self.start_answers_dropped = 0
        self.api_calls = 0
        self._tasks: set[asyncio.Task[None]] = set()

    # ---- data ----------------------------------------------------------------------------
    def data(self, integration_id: str) -> IntegrationData:
        """The integration's source data, created on first use from (seed, integration id)."""
        found = self.integrations.get(integration_id)
        if found is None:
            found = IntegrationData(self.config.seed, integration_id, self.config.applications)
            self.integrations[integration_id] = found
            renderer = self.renderers[integration_id] = Renderer(found, self.config.readings.guessed_shapes)
            self.job_renderers[integration_id] = JobRenderer(renderer)
        return found

    def source(self, integration_id: str, data_type: str) -> Source:
        """The records of one data type of the integration (a simulated one: see ``SIMULATED_MODELS``)."""
        data = self.data(integration_id)
        renderer = self.renderers[integration_id]
        if data_type == ATS_JOBS:
            return Jobs(data, renderer, self.job_renderers[integration_id])
        return Applications(data, renderer, self.config.readings.empty_deleted_ids)

    def truth(self, integration_id: str, data_type: str, models: Iterable[str] | None = None) -> dict[str, Any]:
        """What a receiver of every event of the data type holds (``Source.truth``); models default
        to the integration's job's subscription, else all of the type's."""
        job = self.job_for(integration_id, data_type)
        if models is None:
            models = job.models if job else SIMULATED_MODELS[data_type]
        return self.source(integration_id, data_type).truth(models, job.resent_inactive if job else set())

    # ---- jobs and runs -------------------------------------------------------------------
    def job_for(self, integration_id: str, data_type: str) -> Job | None:
        return self.job_by_key.get((integration_id, data_type))

    def create_job(
        self,
        integration_id: str,
        data_type: str,
        models: list[str],
        destination: str,
        frequency: str,
        settings: dict[str, Any],
    ) -> Job:
        job = Job(
            random_id("sj_"),
            integration_id,
            data_type,
            models,
            destination,
            Target.parse(destination),
            frequency,
            settings,
        )
        self.jobs[job.job_id] = job
        self.job_by_key[(integration_id, data_type)] = job
        self.data(integration_id)
        self._spawn(self._schedule(job))
        return job

    def start_run(
        self,
        job: Job,
        sync_type: str,
        origin: str,
        delta_share: float | None = None,
        skip_empty_all_consumed: bool | None = None,
        honor_scheduler: bool = False,
    ) -> Run:
        """Queue a run of the job; runs of one job execute one after another, as Knit's do.

        ``origin`` says what asked for it (``runs.ACTIVATION`` …); ``delta_share`` and
        ``skip_empty_all_consumed`` override the command line for this run.
        """
        cfg = self.config
        run = Run(
            random_id("sr_"),
            job,
            sync_type,
            cfg.delta_share if delta_share is None else delta_share,
            cfg.readings.skip_empty_all_consumed if skip_empty_all_consumed is None else skip_empty_all_consumed,
            origin,
            honor_scheduler,
        )
        job.runs.append(run)
        self.runs[run.run_id] = run
        self._spawn(self._execute(run))
        return run

    def _spawn(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _execute(self, run: Run) -> None:
        job = run.job
        async with job.lock:
            run.state = RUNNING
            run.started_at = now_ms()
            try:
                delivery = self._prepare(run)
                log.info(
                    "run %s of job %s (%s, %s): delivering %d record events to %s",
                    run.run_id,
                    job.job_id,
                    job.integration_id,
                    run.sync_type,
                    delivery.total,
                    job.target.host_header,
                )
                await delivery.execute()
                job.recent_bodies = delivery.kept
                log.info(
                    "run %s %s: emitted=%d consumed=%d attempts=%d failures=%d given up=%d",
                    run.run_id,
                    run.state,
                    run.emitted,
                    run.consumed,
                    run.attempts,
                    run.to_dict()["failures"],
                    len(run.given_up),
                )
            except asyncio.CancelledError:
                run.state = FAILED
                run.error = "simulator stopped"
                raise
            except Exception as exc:  # a bug must show on /_sim/runs, not hang the waiters
                log.exception("run %s failed", run.run_id)
                run.state = FAILED
                run.error = f"{type(exc).__name__}: {exc}"
            finally:
                self._reschedule_after(run)
                run.done.set()

    # ---- Knit's scheduler ----------------------------------------------------------------
    def interval_ms(self, job: Job) -> int:
        """Milliseconds between the job's scheduled deltas (0: its frequency never runs by itself)."""
        return round(self.config.frequency_seconds.get(job.frequency, 0.0) * 1000)

    def _reschedule_after(self, run: Run) -> None:
        """Knit's scheduler counts from a job's first run, and from an ad-hoc run unless it honours the schedule."""
        job = run.job
        interval = self.interval_ms(job)
        if not interval:
            job.reschedule(None)
        elif job.next_delta_at is None or (run.origin == API and not run.honor_scheduler):
            job.reschedule(now_ms() + interval)

    def set_frequency(self, job: Job, frequency: str) -> None:
        """A new frequency counts from now (from the first run's end if none has finished)."""
        if frequency == job.frequency:
            return
        job.frequency = frequency
        interval = self.interval_ms(job)
        finished = any(run.complete for run in job.runs)
        job.reschedule(now_ms() + interval if interval and finished else None)

    async def _schedule(self, job: Job) -> None:
        """Start a delta of the job when its next one is due; a due time that finds the job busy is skipped."""
        while True:
            job.rescheduled.clear()
            due = job.next_delta_at
            if due is None:
                await job.rescheduled.wait()
                continue
            delay = (due - now_ms()) / 1000
            if delay > 0:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(job.rescheduled.wait(), delay)
                continue
            interval = self.interval_ms(job)
            job.next_delta_at = due + interval if interval else None
            if not job.busy():
                self.start_run(job, DELTA_SYNC, SCHEDULE)

    def _prepare(self, run: Run) -> RunDelivery:
        """Read the source (apply the delta first) and set up the run's event stream."""
        job, cfg = run.job, self.config
        source = self.source(job.integration_id, job.data_type)
        rng = random.Random(stable_hash(cfg.seed, run.run_id))
        if run.sync_type == DELTA_SYNC:
            changes = source.apply_delta(run.delta_share)
            if cfg.readings.silent_deletes:
                changes = [change for change in changes if change[0] != RECORD_DELETED]
            run.processed = source.live_count()
            total = len(changes)
            stream: Iterable[tuple[str, int]] = changes
        else:
            indices = source.live_indices()
            if job.settings.get("includeInactiveRecords"):
                inactive = source.inactive_indices()
                job.resent_inactive.update(inactive)
                indices = sorted([*indices, *inactive])
            run.processed = total = len(indices)
            stream = ((RECORD_NEW, i) for i in indices)
        if cfg.faults.shuffle:
            shuffled = list(stream)
            rng.shuffle(shuffled)
            stream = shuffled
        ids = EventIds()
        records = record_events(run, source, stream, ids, cfg, rng)
        late = [Outgoing("ev_late", body, counted=False, kind="late") for body in job.recent_bodies]
        run.late_redeliveries_sent = len(late)
        return RunDelivery(cfg, run, records, total, late, ids, rng)

    # ---- events outside any run -----------------------------------------------------------
    def activate(
        self,
        integration_id: str,
        destination: str,
        errors: list[Any] | None,
        activated_at: int | None = None,
        *,
        auto_initial_sync: bool | None = None,
    ) -> Notice:
        """Connect an integration: its data set exists from now on (syncs of it are served), and
        ``app.integration.activate`` goes out as Knit sends it after validating the connection.

        A first activation without errors also starts the integration's initial syncs, one per
        ``--data-types`` type, as Knit's Syncs guide says (unless ``--no-auto-initial-sync``: the
        event glossary's reading).
        ``activated_at`` (epoch ms, default now) lets a test send an old activation late;
        ``auto_initial_sync`` overrides ``--no-auto-initial-sync`` for this activation.
        """
        self.data(integration_id)
        outgoing = activation_event(
            integration_id, errors, random_id("ev_"), now_ms() if activated_at is None else activated_at
        )
        notice = Notice(outgoing.event_id, EVENT_ACTIVATE, integration_id, destination)
        self.notices[notice.event_id] = notice
        self._spawn(self._deliver_notice(notice, outgoing))
        if not errors:
            auto = not self.config.readings.no_auto_initial_sync if auto_initial_sync is None else auto_initial_sync
            self._connect(integration_id, destination, auto)
        return notice

    def _connect(self, integration_id: str, destination: str, auto_initial_sync: bool) -> None:
        """The initial syncs Knit starts on a first successful connection, one per configured data type
        (``--data-types``) without a job yet: all its models, standard frequency."""
        first = integration_id not in self.connected
        self.connected.add(integration_id)
        if not first or not auto_initial_sync:
            return
        for data_type in self.config.data_types:
            if self.job_for(integration_id, data_type) is None:
                models = list(SIMULATED_MODELS[data_type])
                job = self.create_job(integration_id, data_type, models, destination, "standard", {})
                self.start_run(job, INITIAL_SYNC, ACTIVATION)

    async def _deliver_notice(self, notice: Notice, outgoing: Outgoing) -> None:
        rng = random.Random(stable_hash(self.config.seed, notice.event_id))
        sender = Sender(
            self.config,
            Target.parse(notice.destination),
            notice.integration_id,
            notice,
            rng,
            f"{notice.event_type} of {notice.integration_id}",
        )
        connection = sender.connection()
        try:
            delivered = await sender.deliver(connection, outgoing)
            notice.state = DELIVERED if delivered else GAVE_UP
        except asyncio.CancelledError:
            notice.state = FAILED
            raise
        except Exception:  # a bug must show on /_sim/notices, not hang the waiters
            log.exception("%s of %s failed", notice.event_type, notice.integration_id)
            notice.state = FAILED
        finally:
            connection.close()
            notice.done.set()

    def busy(self) -> bool:
        return any(not run.complete for run in self.runs.values()) or any(
            not notice.complete for notice in self.notices.values()
        )

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
