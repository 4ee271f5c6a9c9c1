"""Home Assistant MQTT discovery (opt-in ``[homeassistant]``): ``settings`` (the table),
``discovery`` (the pure config builders) and ``announcer`` (keeps the retained configs in
step with the robots, through the outbox).

Wiring::

    settings = HomeAssistantSettings.from_table(Table(doc["homeassistant"], "homeassistant"),
                                                broker=True)
    sync_discovery(settings, identity, topics, robot_ids, outbox, state_dir)  # at every start
"""
