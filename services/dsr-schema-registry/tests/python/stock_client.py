"""Confluent's own Python client against dsr's schema registry.

Run by tests/stock_python_client.rs as
    python3 stock_client.py URL LIFE_EVENT_HEX LIFE_EVENT_ID
Exits non-zero (with a traceback) on the first thing that does not work; prints OK at the end.
"""

import json
import sys

from confluent_kafka.schema_registry import Schema, SchemaRegistryClient
from confluent_kafka.schema_registry.avro import AvroDeserializer, AvroSerializer
from confluent_kafka.schema_registry.error import SchemaRegistryError
from confluent_kafka.serialization import MessageField, SerializationContext

URL, LIFE_EVENT_HEX, LIFE_EVENT_ID = sys.argv[1:4]

V1 = '{"type":"record","name":"Person","namespace":"py","fields":[{"name":"name","type":"string"}]}'
V1_SPACED = '{ "namespace": "py",\n  "type": "record", "name": "Person",\n  "fields": [ {"type": "string", "name": "name"} ] }'
V2_WITH_DEFAULT = '{"type":"record","name":"Person","namespace":"py","fields":[{"name":"name","type":"string"},{"name":"age","type":"int","default":0}]}'
V2_NO_DEFAULT = '{"type":"record","name":"Person","namespace":"py","fields":[{"name":"name","type":"string"},{"name":"age","type":"int"}]}'
SUBJECT = "py-people-value"


def client():
    """A fresh client: nothing cached, every answer comes from the server."""
    return SchemaRegistryClient({"url": URL})


def check(cond, what):
    if not cond:
        raise AssertionError(what)


# Register, idempotently; whitespace does not make a new id.
sid = client().register_schema(SUBJECT, Schema(V1, "AVRO"))
check(sid > 0, f"an id: {sid}")
check(client().register_schema(SUBJECT, Schema(V1, "AVRO")) == sid, "same id again")
check(client().register_schema(SUBJECT, Schema(V1_SPACED, "AVRO")) == sid, "same id, other whitespace")
check(client().register_schema("py-staff-value", Schema(V1, "AVRO")) == sid, "same id, other subject")

# Fetch by id, latest, by version; look up.
fetched = client().get_schema(sid)
check(json.loads(fetched.schema_str) == json.loads(V1), f"schema by id: {fetched.schema_str}")
check(fetched.schema_type == "AVRO", f"schema type: {fetched.schema_type}")
latest = client().get_latest_version(SUBJECT)
check((latest.schema_id, latest.version, latest.subject) == (sid, 1, SUBJECT), f"latest: {latest}")
check(client().get_version(SUBJECT, 1).schema_id == sid, "version 1")
found = client().lookup_schema(SUBJECT, Schema(V1_SPACED, "AVRO"))
check((found.schema_id, found.version) == (sid, 1), f"lookup: {found}")
check(SUBJECT in client().get_subjects(), "subjects")
check(client().get_versions(SUBJECT) == [1], "versions")

# Compatibility: the check, and a refused registration naming the field.
check(client().test_compatibility(SUBJECT, Schema(V2_NO_DEFAULT, "AVRO")) is False, "incompatible")
check(client().test_compatibility(SUBJECT, Schema(V2_WITH_DEFAULT, "AVRO")) is True, "compatible")
try:
    client().register_schema(SUBJECT, Schema(V2_NO_DEFAULT, "AVRO"))
    raise AssertionError("an incompatible schema was registered")
except SchemaRegistryError as e:
    check(e.http_status_code == 409 and e.error_code == 409, f"409: {e}")
    check("Person.age" in e.error_message, f"names the field: {e.error_message}")
try:
    client().get_schema(99999)
    raise AssertionError("schema 99999 exists")
except SchemaRegistryError as e:
    check(e.http_status_code == 404 and e.error_code == 40403, f"40403: {e}")
client().set_compatibility(subject_name=SUBJECT, level="FULL")
check(client().get_compatibility(SUBJECT) == "FULL", "subject level")

# Serializer and deserializer round trip; the serializer registers V2 itself.
ctx = SerializationContext("py-people", MessageField.VALUE)
data = AvroSerializer(client(), V2_WITH_DEFAULT)({"name": "Ada", "age": 36}, ctx)
check(data[0] == 0, "magic byte")
v2_id = int.from_bytes(data[1:5], "big")
check(v2_id == client().get_latest_version(SUBJECT).schema_id and v2_id != sid, f"v2 id {v2_id}")
back = AvroDeserializer(client())(data, ctx)
check(back == {"name": "Ada", "age": 36}, f"round trip: {back}")

# dsr's own LifeEvent bytes (framed with the id our registry gave) decode with Confluent's
# deserializer, which fetches the schema from our registry.
life = AvroDeserializer(client())(bytes.fromhex(LIFE_EVENT_HEX), SerializationContext("life-events", MessageField.VALUE))
check(str(life["event_id"]) == LIFE_EVENT_ID, f"event_id: {life.get('event_id')}")
check(isinstance(life["payload"], (dict, tuple)), f"payload: {life.get('payload')!r}")

print(json.dumps({"id": sid, "v2_id": v2_id, "life_event_type": str(life["event_type"])}))
print("OK")
