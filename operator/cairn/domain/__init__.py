"""Pure decisions: admission, retries and backoff, phase transitions, pod rendering, naming.

No I/O, no kopf, no clients, no clock: time is passed in.
"""
