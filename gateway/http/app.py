"""The FastAPI application: routes per resource (routes/), dependencies in deps.py, errors as
problem details (problems.py). ``create_app(api)`` wires it to a running gateway's parts."""

from __future__ import annotations

from fastapi import FastAPI
from fastapi.exceptions import RequestValidationError

from ..core.payments.operations import PaymentError
from . import problems
from .audit import audit_writes
from .deps import Api
from .routes import bands, charges, guests, ledger, portal, reconciliation, staff
from .schemas import ProblemDetails


def create_app(api: Api) -> FastAPI:
    app = FastAPI(
        title="bandlink gateway",
        version="1",
        summary="Tills, cash desks and operators: charges, wallets, the ledger.",
        description=(
            "Every request needs `Authorization: Bearer <token>` (`bandlink token create`) "
            "or a staff session (`POST /v1/login`), except a guest's band link (`GET /b`). "
            "Every request that asks to change something is written to the audit log. "
            "Every request that moves money needs an `Idempotency-Key`: a repeat gets the "
            "first answer, status and body, and moves nothing. Amounts are integers of minor "
            "units. Errors are `application/problem+json` with a stable `type`."
        ),
    )
    app.state.api = api
    app.add_exception_handler(problems.Problem, problems.on_problem)
    app.add_exception_handler(PaymentError, problems.on_payment_error)
    app.add_exception_handler(RequestValidationError, problems.on_invalid)
    app.add_exception_handler(Exception, problems.on_crash)
    app.middleware("http")(audit_writes)
    for module in (charges, guests, ledger, bands, staff, portal, reconciliation):
        app.include_router(module.router)
    _declare_problem_schema(app)
    return app


def _declare_problem_schema(app: FastAPI) -> None:
    """The problem body's schema, which every route's error responses refer to."""
    build = app.openapi

    def openapi() -> dict[str, object]:
        if app.openapi_schema is None:
            schema = build()
            components = schema.setdefault("components", {}).setdefault("schemas", {})
            components["ProblemDetails"] = ProblemDetails.model_json_schema()
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
