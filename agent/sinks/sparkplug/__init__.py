"""Sparkplug B edge node (opt-in ``[sparkplug]``): the agent as an edge node, its robots as
devices, on a connection of its own whose will is the NDEATH.

Parts: ``settings`` (the table), ``metrics`` (payloads as values, a device's metric table),
``payloads`` (what is reported, pure), ``codec`` (protobuf), ``topics``, ``sequence`` (bdSeq
kept across restarts) and ``edge`` (the session). Nothing is imported here, so reading the
configuration loads neither paho's session code nor protobuf.
"""
