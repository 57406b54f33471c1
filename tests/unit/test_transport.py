"""The held message's value in the unacked hash: what kombu's restore reads back."""

from __future__ import annotations

from kombu.utils.json import loads

from services.worker.broker.transport import _held_value


def test_a_held_message_reads_back_as_kombu_wrote_it() -> None:
    raw = {"body": "eyJ4IjogMX0=", "headers": {"task": "inferq.predict", "retries": 0},
           "properties": {"delivery_tag": "t-1", "priority": 0}, "content-type": "é"}
    assert loads(_held_value(raw, "", "inference")) == [raw, "", "inference"]


def test_a_message_orjson_cannot_encode_falls_back_to_kombus_encoder() -> None:
    raw = {"headers": {"big": 2**70}}
    assert loads(_held_value(raw, "x", "inference")) == [raw, "x", "inference"]
