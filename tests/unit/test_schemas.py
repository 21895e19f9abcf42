"""The wire schemas: AllocateRequest reuses AllocationConfig, validates labels without torch, and
hashes identically for identical requests."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from heterolora.config import LABEL_PROXIES, MAX_LABEL_CHARS, PROXY_NAMES, AllocationConfig, ParamsBudget
from heterolora.errors import DataError
from heterolora.samples import class_names
from heterolora.schemas import MAX_TEXT_CHARS, AllocateRequest, JobStatus, SampleIn, sample_rows

ROWS = [{"text": "a", "text_pair": "b", "label": 1}, {"text": "c", "label": 0}]


def request(**over: object) -> AllocateRequest:
    return AllocateRequest.model_validate({"model_id": "minilm", "samples": ROWS} | over)


def test_label_proxies_match_the_registry() -> None:
    from heterolora.proxies import PROXIES

    assert {name for name, spec in PROXIES.items() if spec.needs_labels} == LABEL_PROXIES
    assert set(PROXIES) == set(PROXY_NAMES)


def test_text_cap_is_enforced_by_the_api_and_the_engine() -> None:
    from heterolora.errors import DataError
    from heterolora.samples import normalize_samples

    too_long = {"text": "x" * (MAX_TEXT_CHARS + 1), "label": 0}
    with pytest.raises(ValueError, match="at most 20000 characters"):
        request(samples=[too_long])
    with pytest.raises(DataError, match="longer than 20000 characters"):
        normalize_samples([too_long])


def test_request_reuses_allocation_config() -> None:
    req = request(budget={"trainable_params": 5000}, proxy="snip", rank_set=[8, 4, 4], shortcuts=True)
    config = req.to_config()
    assert type(config) is AllocationConfig
    assert config.budget == ParamsBudget(trainable_params=5000)
    assert (config.proxy, config.rank_set, config.shortcuts) == ("snip", [4, 8], True)
    assert set(AllocationConfig.model_fields) < set(AllocateRequest.model_fields)


@pytest.mark.parametrize("proxy", sorted(LABEL_PROXIES))
def test_labels_required_for_seq_cls_with_label_proxies(proxy: str) -> None:
    rows = [*ROWS, {"text": "no label"}]
    with pytest.raises(ValidationError) as exc:
        request(samples=rows, proxy=proxy)
    cause = exc.value.errors()[0]["ctx"]["error"]
    assert isinstance(cause, DataError) and cause.field == "samples.2.label"
    request(samples=rows, proxy="synflow")  # data-free proxies need none
    unpaired = [{k: v for k, v in r.items() if k != "text_pair"} for r in rows]
    request(samples=unpaired, proxy=proxy, task="causal-lm")  # nor does causal LM


def test_fingerprint_is_stable_and_covers_every_input() -> None:
    base = request().fingerprint()
    assert base == request().fingerprint() and len(base) == 64
    changed = [
        request(samples=[*ROWS, {"text": "d", "label": 1}]),
        request(budget={"trainable_params": 7}),
        request(seed=1),
        request(model_id="acme/x"),
        request(num_batches=3),
    ]
    assert len({base, *(r.fingerprint() for r in changed)}) == 6


def test_unknown_fields_rejected_everywhere() -> None:
    for bad in ({"colour": 1}, {"samples": [{"text": "a", "label": 1, "x": 2}]}):
        with pytest.raises(ValidationError, match="Extra inputs are not permitted"):
            request(**bad)


def test_job_status_done() -> None:
    assert JobStatus(job_id="j", status="failed", status_url="/jobs/j").done
    assert not JobStatus(job_id="j", status="running", status_url="/jobs/j").done


def test_sample_rows_keeps_only_known_keys() -> None:
    rows = sample_rows([{"text": "a", "label": 2.0, "idx": 5, "text_pair": None}])
    assert rows == [{"text": "a", "label": 2}]


def test_the_schema_bounds_a_label_string_as_the_check_does() -> None:
    """A schema-driven client (or fuzzer) learns the bound the 422 enforces."""
    label = SampleIn.model_json_schema()["properties"]["label"]["anyOf"]
    assert {"type": "string", "maxLength": MAX_LABEL_CHARS} in label
    SampleIn(text="a", label="x" * MAX_LABEL_CHARS)  # the bound itself is a label
    with pytest.raises(DataError, match=f"at most {MAX_LABEL_CHARS}"):
        class_names(["x" * (MAX_LABEL_CHARS + 1)], required=True)
