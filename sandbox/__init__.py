"""The sandbox: a real Kafka broker and two moto servers on 127.0.0.1.

One implementation, used by the tests (pytest fixtures), the demo and the
benchmarks: `python -m sandbox start|status|stop`.
"""
