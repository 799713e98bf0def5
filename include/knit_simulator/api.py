"""HTTP layer: Knit's sync API (``/v1.0/…``) and the simulator's own inspection API (``/_sim/…``)."""

from __future__ import annotations

import asyncio
import contextlib
import hmac
from typing import Any

import orjson
from aiohttp import web

from knit_simulator.http_client import Target
from knit_simulator.rng import random_id
from knit_simulator.runs import API, CONTROL, UPDATE, Job, Notice, Run, StartCall
from knit_simulator.simulator import DELTA_SYNC, INITIAL_SYNC, Simulator
from knit_simulator.sources import ATS_APPLICATIONS, SIMULATED_MODELS

# Data types Knit documents; those in SIMULATED_MODELS are simulated.
KNOWN_DATA_TYPES = frozenset(
    {
        "ats_applications",
        "ats_jobs",
        "ats_candidates",
        "employee",
        "accounting_invoices",
    }
)
SYNC_TYPES = (INITIAL_SYNC, DELTA_SYNC)
# sync.update's body fields besides the job id (whose key is a reading: --update-job-id-key).
UPDATE_FIELDS = frozenset(
    {
        "dataType",
        "models",
        "destination",
        "frequency",
        "honorScheduler",
        "includeInactiveRecords",
        "startHour",
        "startMinute",
    }
)
# sync.start's body fields in Knit's reference ("Start a sync"); --strict-start-keys refuses others.
START_FIELDS = frozenset(
    {"dataType", "syncType", "honorScheduler", "includeInactiveRecords", "models", "startHour", "startMinute"}
)
MAX_WAIT_SECONDS = 600.0
SIM_KEY: web.AppKey[Simulator] = web.AppKey("simulator", Simulator)


class ApiError(Exception):
    """A request Knit would refuse: answered with ``{"success": false, "error": {"msg": …}}``."""

    def __init__(self, status: int, msg: str) -> None:
        super().__init__(msg)
        self.status = status
        self.msg = msg


def _json(payload: Any, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(body=orjson.dumps(payload), status=status, content_type="application/json", headers=headers)


def _knit_error(status: int, msg: str, headers: dict[str, str] | None = None) -> web.Response:
    return _json({"success": False, "error": {"msg": msg}}, status, headers)


@web.middleware
async def knit_api_middleware(request: web.Request, handler: Any) -> web.StreamResponse:
    """Auth, injected API faults, the error envelope and ``X-Knit-Execution-Id`` for ``/v1.0/``."""
    if not request.path.startswith("/v1.0/"):
        return await handler(request)
    sim = request.app[SIM_KEY]
    headers = {"X-Knit-Execution-Id": random_id("ex_")}
    faults = sim.config.faults
    sim.api_calls += 1
    if sim.api_calls <= faults.api_429:
        return _knit_error(
            429, "Too many requests (simulated); retry later.", {**headers, "Retry-After": str(faults.retry_after)}
        )
    if sim.api_calls <= faults.api_429 + faults.api_5xx:
        return _knit_error(
            503,
            "Service temporarily unavailable (simulated); retry later.",
            {**headers, "Retry-After": str(faults.retry_after)},
        )
    auth = request.headers.get("Authorization", "")
    scheme, _, token = auth.partition(" ")
    if scheme.lower() != "bearer" or not hmac.compare_digest(token.strip().encode(), sim.config.api_key.encode()):
        return _knit_error(401, "Unauthorized: missing or invalid API key in 'Authorization: Bearer'.", headers)
    if not request.headers.get("X-Knit-Integration-Id", "").strip():
        return _knit_error(400, "Missing X-Knit-Integration-Id header.", headers)
    try:
        response = await handler(request)
    except ApiError as exc:
        return _knit_error(exc.status, exc.msg, headers)
    except (web.HTTPNotFound, web.HTTPMethodNotAllowed):
        return _knit_error(404, f"Unknown operation {request.path!r}.", headers)
    response.headers.update(headers)
    return response


async def _body(request: web.Request) -> dict[str, Any]:
    return _parse_body(await request.read())


def _parse_body(raw: bytes) -> dict[str, Any]:
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise ApiError(400, f"Request body is not valid JSON: {exc}") from exc
    if not isinstance(body, dict):
        raise ApiError(400, "Request body must be a JSON object.")
    return body


def _models(body: dict[str, Any], data_type: str) -> list[str] | None:
    """The body's ``models`` of ``data_type``, checked; None when absent."""
    models = body.get("models")
    if models is None:
        return None
    known = SIMULATED_MODELS[data_type]
    if not isinstance(models, list) or not models or not all(isinstance(m, str) for m in models):
        raise ApiError(400, f"'models' must be a non-empty list of model ids, e.g. ['{known[0]}'].")
    unknown = sorted(set(models) - set(known))
    if unknown:
        raise ApiError(400, f"Unknown model(s) {unknown} for dataType '{data_type}'; known models: {list(known)}.")
    return list(dict.fromkeys(models))


def _destination(body: dict[str, Any]) -> str | None:
    """The body's ``destination`` (the applications page's shape), checked; None when absent."""
    destination = body.get("destination")
    if destination is None:
        return None
    if not isinstance(destination, str):
        raise ApiError(400, "'destination' must be a URL string.")
    try:
        Target.parse(destination)
    except ValueError as exc:
        raise ApiError(400, f"Invalid 'destination': {exc}.") from exc
    return destination


def _settings(body: dict[str, Any]) -> dict[str, Any]:
    settings: dict[str, Any] = {}
    for flag in ("honorScheduler", "includeInactiveRecords"):
        if flag in body:
            if not isinstance(body[flag], bool):
                raise ApiError(400, f"'{flag}' must be true or false.")
            settings[flag] = body[flag]
    for name, top in (("startHour", 23), ("startMinute", 59)):
        if name in body:
            value = body[name]
            if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= top:
                raise ApiError(400, f"'{name}' must be an integer from 0 to {top}.")
            settings[name] = value
    return settings


def _frequency(body: dict[str, Any]) -> str | None:
    frequency = body.get("frequency")
    if frequency is not None and (not isinstance(frequency, str) or not frequency.strip()):
        raise ApiError(400, "'frequency' must be a string such as 'standard'.")
    return frequency


def _started(sim: Simulator, job: Job, run: Run | None) -> web.Response:
    data: dict[str, Any] = {"syncJobId": job.job_id}
    if run is not None and sim.config.return_run_id:
        data["syncRunId"] = run.run_id
    return _json({"success": True, "data": data})


async def sync_start(request: web.Request) -> web.Response:
    """Start a sync; every call is kept on ``/_sim/starts``, refused or not, answered or not."""
    sim = request.app[SIM_KEY]
    integration_id = request.headers["X-Knit-Integration-Id"].strip()
    call = StartCall(integration_id, None, None, [])
    sim.starts.append(call)
    try:
        body = _parse_body(await request.read())
        call.body_keys = sorted(body)
        data_type, sync_type = body.get("dataType"), body.get("syncType", INITIAL_SYNC)
        call.data_type = data_type if isinstance(data_type, str) else None
        call.sync_type = sync_type if isinstance(sync_type, str) else None
        job, run = _start(sim, integration_id, body)
    except ApiError as exc:
        call.status, call.answered = exc.status, True
        raise
    call.status, call.run_id = 200, run.run_id
    if sim.start_answers_dropped < sim.config.faults.drop_start_answers:
        sim.start_answers_dropped += 1
        assert request.transport is not None
        request.transport.abort()  # the run is started; the caller sees the connection reset
        return web.Response(status=200)
    call.answered = True
    return _started(sim, job, run)


def _start(sim: Simulator, integration_id: str, body: dict[str, Any]) -> tuple[Job, Run]:
    """Check a sync.start body, create or update the job, and queue its run."""
    readings = sim.config.readings
    if readings.strict_start_keys:
        unknown = sorted(set(body) - START_FIELDS)
        if unknown:
            raise ApiError(400, f"Unknown field(s) {unknown} in sync.start; allowed: {sorted(START_FIELDS)}.")
    data_type = body.get("dataType")
    if not isinstance(data_type, str) or not data_type:
        raise ApiError(400, "'dataType' is required, e.g. 'ats_applications'.")
    if data_type not in KNOWN_DATA_TYPES:
        raise ApiError(400, f"Unknown dataType '{data_type}'; known: {sorted(KNOWN_DATA_TYPES)}.")
    if data_type not in SIMULATED_MODELS:
        raise ApiError(
            400, f"dataType '{data_type}' is not simulated; the simulator serves {', '.join(SIMULATED_MODELS)}."
        )
    models = _models(body, data_type)
    destination = _destination(body)
    sync_type = body.get("syncType", INITIAL_SYNC)
    if sync_type not in SYNC_TYPES:
        raise ApiError(400, f"Unknown syncType {sync_type!r}; use one of {list(SYNC_TYPES)}.")
    frequency = _frequency(body)
    settings = _settings(body)
    job = sim.job_for(integration_id, data_type)
    if job is None:
        webhook = destination or sim.config.destination
        if webhook is None:
            raise ApiError(
                400,
                "No webhook is configured for the ATS category: register one in Knit's dashboard "
                "(or through the register-webhook API) before starting a sync.",
            )
        models = models or list(SIMULATED_MODELS[data_type])
        job = sim.create_job(integration_id, data_type, models, webhook, frequency or "standard", settings)
        sync_type = INITIAL_SYNC  # the first run of a job reads everything
    else:
        job.models = models or job.models
        job.settings = {**job.settings, **settings}
        if frequency is not None:
            sim.set_frequency(job, frequency)
        if destination is not None and destination != job.destination:
            job.destination, job.target = destination, Target.parse(destination)
    return job, sim.start_run(job, sync_type, API, honor_scheduler=settings.get("honorScheduler", False))


async def sync_update(request: web.Request) -> web.Response:
    """Knit's pages leave the job-id key unnamed: ``--update-job-id-key`` picks the one read here."""
    sim = request.app[SIM_KEY]
    readings = sim.config.readings
    integration_id = request.headers["X-Knit-Integration-Id"].strip()
    body = await _body(request)
    key = readings.update_job_id_key
    if readings.strict_update_keys:
        unknown = sorted(set(body) - UPDATE_FIELDS - {key})
        if unknown:
            raise ApiError(400, f"Unknown field(s) {unknown} in sync.update; allowed: {sorted(UPDATE_FIELDS | {key})}.")
    job_id = body.get(key)
    if not isinstance(job_id, str) or not job_id:
        raise ApiError(400, f"'{key}' is required.")
    if "dataType" not in body and not readings.update_without_data_type:
        raise ApiError(400, "'dataType' is required, e.g. 'ats_applications'.")
    job = sim.jobs.get(job_id)
    if job is None or job.integration_id != integration_id:
        raise ApiError(400, f"No sync job '{job_id}' for integration '{integration_id}'.")
    if body.get("dataType", job.data_type) != job.data_type:
        raise ApiError(400, f"Sync job '{job_id}' syncs '{job.data_type}', not {body['dataType']!r}.")
    models = _models(body, job.data_type)
    destination = _destination(body)
    frequency = _frequency(body)
    job.settings.update(_settings(body))
    if destination is not None and destination != job.destination:
        job.destination, job.target = destination, Target.parse(destination)
    if frequency is not None:
        sim.set_frequency(job, frequency)
    run = None
    if models is not None and set(models) != set(job.models):
        job.models = models
        run = sim.start_run(job, INITIAL_SYNC, UPDATE)  # new models: Knit re-sends everything
    return _started(sim, job, run)


# ---- /_sim: inspection and control for tests, the demo and benchmarks --------------------------
def _wait_seconds(request: web.Request) -> float:
    try:
        return min(MAX_WAIT_SECONDS, max(0.0, float(request.query.get("wait", "0"))))
    except ValueError as exc:
        raise web.HTTPBadRequest(text="'wait' must be a number of seconds") from exc


async def list_runs(request: web.Request) -> web.Response:
    sim = request.app[SIM_KEY]
    job_id, integration_id = request.query.get("job_id"), request.query.get("integration_id")
    runs = [
        run.to_dict()
        for run in sim.runs.values()
        if (job_id is None or run.job.job_id == job_id)
        and (integration_id is None or run.job.integration_id == integration_id)
    ]
    return _json({"runs": runs})


async def get_run(request: web.Request) -> web.Response:
    sim = request.app[SIM_KEY]
    run = sim.runs.get(request.match_info["run_id"])
    if run is None:
        raise web.HTTPNotFound(text="no such run")
    return await _when_complete(request, run)


async def _when_complete(request: web.Request, item: Run | Notice) -> web.Response:
    """Answer with ``item`` once it is complete, or after the request's ``wait`` seconds, whichever is first."""
    wait = _wait_seconds(request)
    if wait and not item.complete:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(item.done.wait(), wait)
    return _json(item.to_dict())


def _job_or_404(sim: Simulator, request: web.Request) -> Job:
    job = sim.jobs.get(request.match_info["job_id"])
    if job is None:
        raise web.HTTPNotFound(text="no such job")
    return job


async def get_job(request: web.Request) -> web.Response:
    sim = request.app[SIM_KEY]
    job = _job_or_404(sim, request)
    wait = _wait_seconds(request)
    if wait and job.busy():
        loop = asyncio.get_running_loop()
        deadline = loop.time() + wait
        try:
            while job.busy():
                pending = next(run for run in job.runs if not run.complete)
                await asyncio.wait_for(pending.done.wait(), max(0.0, deadline - loop.time()))
        except TimeoutError:
            pass
    return _json(job.to_dict())


async def _control_body(request: web.Request, example: str) -> dict[str, Any]:
    """The optional JSON object body of a ``/_sim`` control call."""
    raw = await request.read()
    if not raw.strip():
        return {}
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise web.HTTPBadRequest(text=f"body must be a JSON object such as {example}") from exc
    if not isinstance(body, dict):
        raise web.HTTPBadRequest(text=f"body must be a JSON object such as {example}")
    return body


async def trigger_run(request: web.Request) -> web.Response:
    """Start a run the way Knit's own scheduler would (a delta unless the body says otherwise).

    Optional ``deltaShare`` (0 to 1; 0 makes a run with no change) and ``skipEmptyAllConsumed``
    override the command line for this run.
    """
    sim = request.app[SIM_KEY]
    job = _job_or_404(sim, request)
    body = await _control_body(request, '{"syncType": "delta_sync", "deltaShare": 0}')
    sync_type = body.get("syncType", DELTA_SYNC)
    if sync_type not in SYNC_TYPES:
        raise web.HTTPBadRequest(text=f"syncType must be one of {list(SYNC_TYPES)}")
    share = body.get("deltaShare")
    if share is not None and (isinstance(share, bool) or not isinstance(share, (int, float)) or not 0 <= share <= 1):
        raise web.HTTPBadRequest(text=f"deltaShare must be a number from 0 to 1, got {share!r}")
    skip = body.get("skipEmptyAllConsumed")
    if skip is not None and not isinstance(skip, bool):
        raise web.HTTPBadRequest(text=f"skipEmptyAllConsumed must be true or false, got {skip!r}")
    run = sim.start_run(job, sync_type, CONTROL, delta_share=share, skip_empty_all_consumed=skip)
    return _json({"syncJobId": job.job_id, "syncRunId": run.run_id, "syncType": sync_type})


async def activate(request: web.Request) -> web.Response:
    """Connect an integration, as a customer does through Knit's UI component: the simulator holds its data
    set from now on, and sends ``app.integration.activate``, as Knit does after validating it; a first
    activation without errors also starts its initial sync (``Simulator.activate``).

    Body (optional): ``errors`` (a list, sent as the validation errors), ``destination`` (else
    the integration's sync job's destination, else ``--destination``), ``activatedAt`` (epoch
    milliseconds, default now: an old activation delivered late) and ``autoInitialSync`` (true or
    false: this activation plays one reading of Knit's pages whatever ``--no-auto-initial-sync`` says).
    """
    sim = request.app[SIM_KEY]
    integration_id = request.match_info["integration_id"]
    body = await _control_body(request, '{"errors": [{"msg": "invalid credentials"}]}')
    errors = body.get("errors")
    if errors is not None and not isinstance(errors, list):
        raise web.HTTPBadRequest(text=f"errors must be a list, got {errors!r}")
    jobs = [job for job in (sim.job_for(integration_id, t) for t in SIMULATED_MODELS) if job is not None]
    destination = body.get("destination")
    if destination is not None and not isinstance(destination, str):
        raise web.HTTPBadRequest(text=f"destination must be a URL string, got {destination!r}")
    destination = destination or (jobs[0].destination if jobs else None) or sim.config.destination
    if destination is None:
        raise web.HTTPBadRequest(
            text=f'no destination for integration {integration_id!r}: pass "destination" '
            "(no sync job of it names one, and no --destination was given)"
        )
    try:
        Target.parse(destination)
    except ValueError as exc:
        raise web.HTTPBadRequest(text=str(exc)) from exc
    activated_at = body.get("activatedAt")
    if activated_at is not None and (isinstance(activated_at, bool) or not isinstance(activated_at, int)):
        raise web.HTTPBadRequest(text=f"activatedAt must be epoch milliseconds (an integer), got {activated_at!r}")
    auto = body.get("autoInitialSync")
    if auto is not None and not isinstance(auto, bool):
        raise web.HTTPBadRequest(text=f"autoInitialSync must be true or false, got {auto!r}")
    return _json(sim.activate(integration_id, destination, errors, activated_at, auto_initial_sync=auto).to_dict())


async def list_starts(request: web.Request) -> web.Response:
    """Every ``sync.start`` call received: what it asked, the run it started, whether it was answered."""
    sim = request.app[SIM_KEY]
    integration_id = request.query.get("integration_id")
    return _json(
        {
            "starts": [
                call.to_dict() for call in sim.starts if integration_id is None or call.integration_id == integration_id
            ]
        }
    )


async def list_notices(request: web.Request) -> web.Response:
    sim = request.app[SIM_KEY]
    integration_id = request.query.get("integration_id")
    return _json(
        {
            "notices": [
                n.to_dict()
                for n in sim.notices.values()
                if integration_id is None or n.integration_id == integration_id
            ]
        }
    )


async def get_notice(request: web.Request) -> web.Response:
    sim = request.app[SIM_KEY]
    notice = sim.notices.get(request.match_info["event_id"])
    if notice is None:
        raise web.HTTPNotFound(text="no such notice")
    return await _when_complete(request, notice)


async def truth(request: web.Request) -> web.Response:
    """What a receiver of every event of one data type holds (``data_type``, default applications)."""
    sim = request.app[SIM_KEY]
    integration_id = request.query.get("integration_id")
    if not integration_id:
        raise web.HTTPBadRequest(text="integration_id is required")
    data_type = request.query.get("data_type", ATS_APPLICATIONS)
    if data_type not in SIMULATED_MODELS:
        raise web.HTTPBadRequest(text=f"data_type must be one of {list(SIMULATED_MODELS)}, got {data_type!r}")
    models = [m for m in request.query["models"].split(",") if m] if "models" in request.query else None
    return _json(sim.truth(integration_id, data_type, models))


async def info(request: web.Request) -> web.Response:
    """Answers any other GET, so readiness can be probed with a plain request."""
    sim = request.app[SIM_KEY]
    cfg = sim.config
    return _json(
        {
            "service": "knit-simulator",
            "applications": cfg.applications,
            "seed": cfg.seed,
            "concurrency": cfg.concurrency,
            "busy": sim.busy(),
            "faults": vars(cfg.faults),
            "readings": vars(cfg.readings),
        }
    )


def build_app(sim: Simulator) -> web.Application:
    app = web.Application(middlewares=[knit_api_middleware], client_max_size=8 * 1024 * 1024)
    app[SIM_KEY] = sim
    app.router.add_post("/v1.0/sync.start", sync_start)
    app.router.add_post("/v1.0/sync.update", sync_update)
    app.router.add_get("/_sim/runs", list_runs)
    app.router.add_get("/_sim/runs/{run_id}", get_run)
    app.router.add_get("/_sim/jobs/{job_id}", get_job)
    app.router.add_post("/_sim/jobs/{job_id}/run", trigger_run)
    app.router.add_get("/_sim/truth", truth)
    app.router.add_post("/_sim/integrations/{integration_id}/activate", activate)
    app.router.add_get("/_sim/starts", list_starts)
    app.router.add_get("/_sim/notices", list_notices)
    app.router.add_get("/_sim/notices/{event_id}", get_notice)
    app.router.add_get("/{tail:.*}", info)
    return app
