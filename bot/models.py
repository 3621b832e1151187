"""One place that imports every model so metadata and migrations see them all."""


def import_all_models() -> None:
    """Import each domain's models module."""
    import core.conversation.models
    import core.outbox.models  # noqa: F401
    import knowledge.models  # noqa: F401
    import ticketing.incident_models
    import ticketing.models  # noqa: F401
