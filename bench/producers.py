"""The producers the Kafka benchmarks fill their topics with (``bench/throughput.py``, ``bench/scale_out.py``):
confluent-kafka's, the default and much the faster, and kafka-python's, by name in ``PRODUCERS``.
"""

from __future__ import annotations

from collections.abc import Callable

from confluent_kafka import Producer
from kafka import KafkaProducer


def produce_confluent(bootstrap: str, topic: str, values: list[bytes], timestamps: list[int]) -> None:
    """The default: some 20 times kafka-python's producer on one partition here (about 0.5 M against 25 k/s)."""
    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 50, "batch.size": 1_000_000,
                         "batch.num.messages": 100_000, "queue.buffering.max.messages": 2_000_000,
                         "queue.buffering.max.kbytes": 1_048_576, "compression.type": "none"})
    send = producer.produce
    for value, timestamp in zip(values, timestamps):
        while True:
            try:
                send(topic, value, timestamp=timestamp)
                break
            except BufferError:  # the local queue is full: let deliveries drain it
                producer.poll(0.5)
    if producer.flush(120) != 0:
        raise RuntimeError("confluent-kafka producer could not deliver every record within 120 s")


def produce_kafka_python(bootstrap: str, topic: str, values: list[bytes], timestamps: list[int]) -> None:
    # Batches stay under the broker's default message.max.bytes (1 MiB).
    producer = KafkaProducer(bootstrap_servers=bootstrap, linger_ms=50, batch_size=1_000_000)
    send = producer.send
    for value, timestamp in zip(values, timestamps):
        send(topic, value=value, timestamp_ms=timestamp)
    producer.flush(timeout=300)
    producer.close()


PRODUCERS: dict[str, Callable[[str, str, list[bytes], list[int]], None]] = {
    "confluent-kafka": produce_confluent, "kafka-python": produce_kafka_python}
