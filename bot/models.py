"""Every model of the project imported in one place, so that the metadata (and Alembic) sees all tables."""

import core.conversation.models
import core.outbox.models  # noqa: F401
import integrations.models  # noqa: F401
import invoices.models  # noqa: F401
import knowledge.models  # noqa: F401
import merchants.models  # noqa: F401
import ticketing.incident_models
import ticketing.models  # noqa: F401
from core.database import Base

metadata = Base.metadata
