"""heterolora.samples: labels are class names (renumbered 0..n-1, capped, one type), and the one
set of sample checks serves the library and the wire schema alike (issue 11 items 1 and 7)."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from heterolora.config import MAX_CLASSES, MAX_TEXT_CHARS, AllocationConfig
from heterolora.errors import DataError
from heterolora.samples import class_names, label_map, normalize_samples, num_labels_of
from heterolora.schemas import AllocateRequest


def request(samples: list[dict], **options: object) -> AllocateRequest:
    return AllocateRequest.model_validate({"model_id": "minilm", "samples": samples, **options})


def rejected(samples: list[dict], **options: object) -> DataError:
    """The library error behind the schema's 422 (the service reports its code and field)."""
    with pytest.raises(ValidationError) as exc:
        request(samples, **options)
    cause = exc.value.errors()[0]["ctx"]["error"]
    assert isinstance(cause, DataError)
    return cause


def test_a_huge_label_is_a_class_name_not_a_head_size() -> None:
    rows = [{"text": "a", "label": 3_000_000}, {"text": "b", "label": 0}]
    assert label_map(normalize_samples(rows), required=True) == {0: 0, 3_000_000: 1}
    assert num_labels_of(class_names([3_000_000, 0], required=True)) == 2


def test_classes_are_sorted_numbers_by_value_and_names_alphabetically() -> None:
    assert class_names([7, 2, 7, 10], required=True) == [2, 7, 10]
    assert class_names(["10", "2", "0"], required=True) == ["0", "2", "10"]  # TSV labels are strings
    assert class_names(["neg", "pos", "neg", None], required=False) == ["neg", "pos"]
    assert num_labels_of(class_names(["only"], required=True)) == 2  # a head has at least two outputs


def test_mixed_label_types_are_rejected_naming_the_sample() -> None:
    with pytest.raises(DataError) as exc:
        class_names([1, "1"], required=True)
    assert exc.value.field == "samples.1.label" and "mix numbers and strings" in exc.value.message
    assert rejected([{"text": "a", "label": 1}, {"text": "b", "label": "1"}]).field == "samples.1.label"


def test_the_number_of_classes_is_capped() -> None:
    many = [{"text": f"t{i}", "label": i} for i in range(MAX_CLASSES + 1)]
    with pytest.raises(DataError, match=f"at most {MAX_CLASSES}") as exc:
        class_names([r["label"] for r in many], required=True)
    assert exc.value.field == "samples"
    assert rejected(many).field == "samples"
    request(many[:MAX_CLASSES])  # exactly at the cap is fine


def test_text_and_pair_together_are_bounded_in_the_schema() -> None:
    half = "x" * (MAX_TEXT_CHARS // 2 + 1)
    cause = rejected([{"text": half, "text_pair": half, "label": 0}])
    assert cause.field == "samples.0.text" and "text + text_pair" in cause.message
    with pytest.raises(DataError, match="longer than"):
        normalize_samples([{"text": half, "text_pair": half}])


def test_causal_lm_rejects_text_pairs() -> None:
    pair = [{"text": "a", "text_pair": "b"}]
    assert rejected(pair, task="causal-lm", proxy="synflow").field == "samples.0.text_pair"
    with pytest.raises(DataError, match="causal-lm"):
        normalize_samples(pair, task="causal-lm")
    assert normalize_samples(pair, task="seq-cls")[0]["text_pair"] == "b"


def test_pandas_rows_become_plain_python(tmp_path) -> None:
    pd = pytest.importorskip("pandas")
    frame = pd.DataFrame({"text": ["a", "b"], "label": [1, 0], "text_pair": [None, "c"]})
    rows = normalize_samples(frame)
    assert rows == [{"text": "a", "text_pair": None, "label": 1}, {"text": "b", "text_pair": "c", "label": 0}]
    assert type(rows[0]["label"]) is int


@pytest.mark.parametrize(
    ("options", "field"),
    [
        ({"alpha_ratio": 1e308}, "alpha_ratio"),
        ({"rank_set": []}, "rank_set"),
        ({"rank_set": [5000]}, "rank_set"),
        ({"types": []}, "types"),
        ({"layers": [-1]}, "layers.0"),
        ({"seed": -1}, "seed"),
        ({"seed": 2**40}, "seed"),
        ({"max_rank": 10**6}, "max_rank"),
        ({"shortcut_share": 1.5}, "shortcut_share"),
    ],
)
def test_every_numeric_option_is_bounded_in_the_schema(options: dict, field: str) -> None:
    with pytest.raises(ValidationError) as exc:
        AllocationConfig.model_validate(options)
    assert ".".join(map(str, exc.value.errors()[0]["loc"])) == field
    schema = AllocateRequest.model_json_schema()["properties"]
    assert schema["rank_set"]["minItems"] == 1 and schema["rank_set"]["items"]["maximum"] == 4096


@pytest.mark.parametrize("budget", ["100000", None, 5, {"like": {"r": 10**6}}, {"trainable_params": 10**13}])
def test_a_bad_budget_is_reported_on_the_field_the_user_wrote(budget: object) -> None:
    with pytest.raises(ValidationError) as exc:
        AllocationConfig.model_validate({"budget": budget})
    cause = exc.value.errors()[0]["ctx"]["error"]
    assert cause.field == "budget"


def test_the_plan_records_the_classes() -> None:
    from heterolora.planner import prepare
    from heterolora.samples import builtin_sample

    rows = [{**r, "label": 3_000_000 if r["label"] == 1 else 0} for r in builtin_sample()[:16]]
    config = AllocationConfig(num_batches=2)
    loaded, batches = prepare("minilm", rows, config, device="cpu")
    assert loaded.model.config.num_labels == 2
    assert {int(x) for b in batches for x in b["labels"]} == {0, 1}
    import heterolora

    plan = heterolora.plan("minilm", rows, config, device="cpu")
    assert plan.labels == [0, 3_000_000]
