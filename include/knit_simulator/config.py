"""The simulator's settings, read once from the command line (``python -m knit_simulator --help``)."""

from __future__ import annotations

import argparse
import os
from collections.abc import Sequence
from dataclasses import dataclass, field

API_KEY_ENV = "KNIT_SIMULATOR_API_KEY"
# The data types the simulator serves (sources.SIMULATED_MODELS has their models).
SIMULATED_DATA_TYPES = ("ats_applications", "ats_jobs")


@dataclass(frozen=True)
class Faults:
    """Misbehaviour to inject; all off by default."""

    duplicate_share: float = 0.0  # share of record events delivered a second time after their 200
    shuffle: bool = False  # deliver a run's records in random order instead of id order
    late_redelivery: int = 0  # events of a job's previous run re-sent during its next run
    api_429: int = 0  # the first N API calls answer 429 with Retry-After
    api_5xx: int = 0  # the next N API calls answer 503
    retry_after: int = 1  # seconds in the Retry-After of those answers
    drop_share: float = 0.0  # share of delivery attempts cut off halfway through the body
    slow_ms: int = 0  # pause between headers and body of a delivery
    slow_share: float = 1.0  # share of delivery attempts that are slow (when slow_ms > 0)
    invalid_json_share: float = 0.0  # share of record events preceded by a signed, truncated body
    unusable_share: float = 0.0  # share of record events sent as a signed body no receiver can use
    unusable_kind: str = "truncated"  # truncated | no-event-id
    drop_start_answers: int = 0  # the first N accepted sync.start calls start their run, then hang up unanswered


UNUSABLE_KINDS = ("truncated", "no-event-id")
UPDATE_JOB_ID_KEYS = ("syncJobId", "jobId")
FREQUENCIES = ("standard", "medium", "high")  # the frequencies Knit's guides name


@dataclass(frozen=True)
class Readings:
    """Where Knit's pages allow more than one behaviour: which one to simulate.

    Defaults: what Knit's reference documents, else the usual guess (docs/internals.md lists which).
    """

    skip_empty_all_consumed: bool = False  # a run that emitted nothing sends no allConsumed
    empty_deleted_ids: bool = False  # record.deleted carries "" for applicationId, candidateId, jobId
    silent_deletes: bool = False  # a delta does not report deletions; only the next initial sync shows them
    spaced_json: bool = False  # bodies written with ", " and ": " separators
    escaped_json: bool = False  # bodies with \u escapes: non-ASCII and = & < > ' (as Gson writes)
    sign_compact: bool = False  # sign the compact re-serialisation instead of the bytes sent
    retry_window_seconds: float = 0.0  # give an event up this long after its first attempt (0: never)
    update_job_id_key: str = "syncJobId"  # the body key sync.update reads the job id from
    strict_update_keys: bool = False  # sync.update refuses body keys it does not know
    update_without_data_type: bool = False  # sync.update takes a body without dataType (Knit requires it)
    strict_start_keys: bool = False  # sync.start refuses body keys Knit does not document
    no_auto_initial_sync: bool = False  # connecting starts nothing until sync.start (the event glossary)
    guessed_shapes: bool = False  # eventData in the shapes guessed before Knit's data-model pages were read


@dataclass(frozen=True)
class SimConfig:
    api_key: str
    port: int = 0
    host: str = "127.0.0.1"
    applications: int = 100
    seed: int = 1
    concurrency: int = 32
    retry_base_delay: float = 0.1
    retry_max_delay: float = 4.0
    request_timeout: float = 30.0
    delta_share: float = 0.1
    return_run_id: bool = False
    destination: str | None = None
    progress_events: int = 0  # processed events with complete=false before the final one
    # seconds between a job's scheduled deltas, per frequency; a frequency absent or 0 never runs by itself
    frequency_seconds: dict[str, float] = field(default_factory=dict)
    # the data types whose initial sync Knit starts when an integration connects (the ones configured)
    data_types: tuple[str, ...] = SIMULATED_DATA_TYPES
    faults: Faults = Faults()
    readings: Readings = Readings()

    def __repr__(self) -> str:  # the API key must never reach a log
        return f"SimConfig(port={self.port}, applications={self.applications}, seed={self.seed}, ...)"


def _share(text: str) -> float:
    value = float(text)
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"{text} is not a share between 0 and 1")
    return value


def _non_negative(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"{text} must be 0 or more")
    return value


def _frequency_seconds(text: str) -> dict[str, float]:
    """``standard=S,medium=M,high=H`` (any subset) as {frequency: seconds}."""
    out: dict[str, float] = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        name, sep, value = part.partition("=")
        if not sep or name not in FREQUENCIES:
            raise argparse.ArgumentTypeError(f"{part!r} is not FREQUENCY=SECONDS with FREQUENCY in {list(FREQUENCIES)}")
        try:
            seconds = float(value)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{value!r} in {part!r} is not a number of seconds") from None
        if not seconds >= 0:
            raise argparse.ArgumentTypeError(f"{part!r}: seconds must be 0 or more")
        out[name] = seconds
    return out


def _data_types(text: str) -> tuple[str, ...]:
    """``ats_applications,ats_jobs`` (any non-empty subset of the simulated types) as a tuple, in order given."""
    names = tuple(dict.fromkeys(filter(None, (n.strip() for n in text.split(",")))))
    unknown = [n for n in names if n not in SIMULATED_DATA_TYPES]
    if unknown or not names:
        raise argparse.ArgumentTypeError(
            f"{text!r}: give one or more of {', '.join(SIMULATED_DATA_TYPES)}, comma-separated"
        )
    return names


def parse_args(argv: Sequence[str] | None = None) -> SimConfig:
    p = argparse.ArgumentParser(
        prog="python -m knit_simulator",
        description="Serve Knit's sync API on 127.0.0.1 and push seeded ATS applications and jobs as Knit does.",
    )
    p.add_argument("--port", type=_non_negative, default=0, help="port to listen on (0: any free port)")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--api-key", default=None, help=f"the API key callers must present (or ${API_KEY_ENV})")
    p.add_argument("--applications", type=_non_negative, default=100, help="applications per integration")
    p.add_argument("--seed", type=int, default=1, help="same seed, same data")
    p.add_argument("--concurrency", type=int, default=32, help="deliveries in flight per run")
    p.add_argument("--retry-base-delay", type=float, default=0.1, help="first retry delay, seconds")
    p.add_argument("--retry-max-delay", type=float, default=4.0, help="cap of the exponential backoff")
    p.add_argument("--request-timeout", type=float, default=30.0, help="per delivery attempt, seconds")
    p.add_argument("--delta-share", type=_share, default=0.1, help="share of applications or open jobs a delta changes")
    p.add_argument("--return-run-id", action="store_true", help="include data.syncRunId in sync.start")
    p.add_argument(
        "--destination",
        default=None,
        metavar="URL",
        help="the webhook configured for the ATS category in Knit's dashboard (or its register-webhook API): "
        "where runs and activations are delivered unless a sync.start names a destination of its own",
    )
    p.add_argument(
        "--progress-events",
        type=_non_negative,
        nargs="?",
        const=1,
        default=0,
        metavar="N",
        help="also send N sync.events.processed with complete=false, evenly through a run (N defaults to 1: halfway)",
    )
    p.add_argument(
        "--frequency-seconds",
        type=_frequency_seconds,
        default={},
        metavar="standard=S,medium=M,high=H",
        help="Knit's scheduler, compressed: an idle job runs a delta every S/M/H seconds of its frequency "
        "(any subset; a frequency left out or 0 never runs by itself; default: none runs by itself)",
    )
    p.add_argument(
        "--data-types",
        type=_data_types,
        default=SIMULATED_DATA_TYPES,
        metavar="TYPE,TYPE",
        help="the data types whose initial sync starts by itself when an integration connects "
        f"(default: {','.join(SIMULATED_DATA_TYPES)}); sync.start serves every simulated type",
    )
    f = p.add_argument_group("faults")
    f.add_argument("--duplicate-share", type=_share, default=0.0)
    f.add_argument("--shuffle", action="store_true")
    f.add_argument("--late-redelivery", type=_non_negative, default=0, metavar="N")
    f.add_argument("--api-429", type=_non_negative, default=0, metavar="N")
    f.add_argument("--api-5xx", type=_non_negative, default=0, metavar="N")
    f.add_argument("--retry-after", type=_non_negative, default=1, metavar="SECONDS")
    f.add_argument("--drop-share", type=_share, default=0.0)
    f.add_argument("--slow-ms", type=_non_negative, default=0)
    f.add_argument("--slow-share", type=_share, default=1.0)
    f.add_argument("--invalid-json-share", type=_share, default=0.0)
    f.add_argument(
        "--drop-start-answers",
        type=_non_negative,
        default=0,
        metavar="N",
        help="the first N accepted sync.start calls start their run, then the connection closes without an answer",
    )
    f.add_argument(
        "--unusable-share",
        type=_share,
        default=0.0,
        help="share of record events sent, in their place, as a signed body no receiver can use; "
        "counted as emitted and retried until 200 like any event",
    )
    f.add_argument(
        "--unusable-kind",
        choices=UNUSABLE_KINDS,
        default="truncated",
        help="truncated: the body cut to two thirds; no-event-id: the event without its eventId",
    )
    r = p.add_argument_group("readings", "behaviours Knit's pages leave open; each picks one reading")
    r.add_argument(
        "--skip-empty-all-consumed",
        action="store_true",
        help="a run that emitted no record event sends only its final processed (emitted 0)",
    )
    r.add_argument(
        "--empty-deleted-ids",
        action="store_true",
        help='record.deleted carries "applicationId": "", "candidateId": "", "jobId": "" as on Knit\'s page',
    )
    r.add_argument(
        "--silent-deletes",
        action="store_true",
        help="deltas do not report deleted applications (hard deletes in the ATS); the next initial sync omits them",
    )
    r.add_argument("--spaced-json", action="store_true", help='bodies written with ", " and ": " separators')
    r.add_argument(
        "--escaped-json",
        action="store_true",
        help="bodies with \\u escapes for non-ASCII and for = & < > ' (as Gson writes them)",
    )
    r.add_argument(
        "--sign-compact",
        action="store_true",
        help="sign the compact re-serialisation (JSON.stringify) instead of the bytes sent",
    )
    r.add_argument(
        "--retry-window-seconds",
        type=float,
        default=0.0,
        help="Knit's ~4 days, compressed: give an event up this long after its first attempt (0: retry forever)",
    )
    r.add_argument(
        "--update-job-id-key",
        choices=UPDATE_JOB_ID_KEYS,
        default="syncJobId",
        help="the body key sync.update reads the job id from",
    )
    r.add_argument(
        "--strict-update-keys",
        action="store_true",
        help="sync.update refuses (400) body keys it does not know, the other job-id key included",
    )
    r.add_argument(
        "--update-without-data-type",
        action="store_true",
        help="sync.update takes a body without dataType (Knit's reference requires it: 400 by default)",
    )
    r.add_argument(
        "--strict-start-keys",
        action="store_true",
        help="sync.start refuses (400) body keys Knit's reference does not list, destination and frequency included",
    )
    r.add_argument(
        "--no-auto-initial-sync",
        action="store_true",
        help="connecting an integration only sends app.integration.activate; nothing runs until sync.start "
        "(the event glossary's reading; by default Knit starts the initial sync itself, as its Syncs guide says)",
    )
    r.add_argument(
        "--guessed-shapes",
        action="store_true",
        help="eventData as guessed before Knit's data models were read: candidate location an object, "
        "info.jobTitle, stages {id, name} or {id, text} per job, interviews without stage and createdBy, "
        "no customFields",
    )
    a = p.parse_args(argv)
    api_key = a.api_key or os.environ.get(API_KEY_ENV)
    if not api_key:
        p.error(f"an API key is required: pass --api-key or set {API_KEY_ENV}")
    if a.concurrency < 1:
        p.error("--concurrency must be at least 1")
    if a.retry_window_seconds < 0:
        p.error("--retry-window-seconds must be 0 (retry forever) or more")
    if a.drop_share >= 1.0:
        p.error("--drop-share must be below 1, or no delivery could ever succeed")
    return SimConfig(
        api_key=api_key,
        port=a.port,
        host=a.host,
        applications=a.applications,
        seed=a.seed,
        concurrency=a.concurrency,
        retry_base_delay=a.retry_base_delay,
        retry_max_delay=a.retry_max_delay,
        request_timeout=a.request_timeout,
        delta_share=a.delta_share,
        return_run_id=a.return_run_id,
        destination=a.destination,
        progress_events=a.progress_events,
        frequency_seconds=a.frequency_seconds,
        data_types=a.data_types,
        faults=Faults(
            duplicate_share=a.duplicate_share,
            shuffle=a.shuffle,
            late_redelivery=a.late_redelivery,
            api_429=a.api_429,
            api_5xx=a.api_5xx,
            retry_after=a.retry_after,
            drop_share=a.drop_share,
            slow_ms=a.slow_ms,
            slow_share=a.slow_share,
            invalid_json_share=a.invalid_json_share,
            unusable_share=a.unusable_share,
            unusable_kind=a.unusable_kind,
            drop_start_answers=a.drop_start_answers,
        ),
        readings=Readings(
            skip_empty_all_consumed=a.skip_empty_all_consumed,
            empty_deleted_ids=a.empty_deleted_ids,
            silent_deletes=a.silent_deletes,
            spaced_json=a.spaced_json,
            escaped_json=a.escaped_json,
            sign_compact=a.sign_compact,
            retry_window_seconds=a.retry_window_seconds,
            update_job_id_key=a.update_job_id_key,
            strict_update_keys=a.strict_update_keys,
            update_without_data_type=a.update_without_data_type,
            strict_start_keys=a.strict_start_keys,
            no_auto_initial_sync=a.no_auto_initial_sync,
            guessed_shapes=a.guessed_shapes,
        ),
    )
