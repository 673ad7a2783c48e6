"""Produces one IncomeReported life event to a Kafka topic with Confluent's own Python client:
`SerializingProducer` + `AvroSerializer` registering the schema through the schema registry
at the given URL (dsr's own in the test), exactly as a source system would.

    produce_life_event.py BOOTSTRAP REGISTRY_URL TOPIC SCHEMA_FILE EVENT_JSON

EVENT_JSON holds the envelope fields and the IncomeReported payload; the script prints the
schema id the serializer used.
"""

import json
import sys

from confluent_kafka import SerializingProducer
from confluent_kafka.schema_registry import SchemaRegistryClient
from confluent_kafka.schema_registry.avro import AvroSerializer
from confluent_kafka.serialization import StringSerializer


def main() -> None:
    bootstrap, registry_url, topic, schema_file, event_json = sys.argv[1:6]
    with open(schema_file, encoding="utf-8") as f:
        schema = f.read()
    event = json.loads(event_json)
    # The payload is a union of records: name the branch with fastavro's `-type` key.
    event["payload"]["-type"] = "dsr.events.IncomeReported"

    registry = SchemaRegistryClient({"url": registry_url})
    serializer = AvroSerializer(registry, schema)  # auto-registers under TOPIC-value
    producer = SerializingProducer(
        {
            "bootstrap.servers": bootstrap,
            "key.serializer": StringSerializer("utf_8"),
            "value.serializer": serializer,
            "enable.idempotence": True,
            "partitioner": "murmur2_random",
        }
    )
    errors = []
    producer.produce(
        topic,
        key=event["household_id"],
        value=event,
        on_delivery=lambda err, msg: errors.append(err) if err else None,
    )
    remaining = producer.flush(30)
    if remaining or errors:
        sys.exit(f"not delivered: {remaining} in flight, errors {errors}")
    latest = registry.get_latest_version(f"{topic}-value")
    print(json.dumps({"schema_id": latest.schema_id}))


if __name__ == "__main__":
    main()
