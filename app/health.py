"""Liveness and readiness probes."""

from __future__ import annotations

from flask import Blueprint, jsonify
from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError

from app.db import get_db

bp = Blueprint("health", __name__)


@bp.get("/healthz")
def healthz():
    return jsonify(status="ok")


@bp.get("/readyz")
def readyz():
    try:
        with get_db().engine.connect() as conn:
            conn.execute(text("SELECT 1"))
    except SQLAlchemyError:
        response = jsonify(status="unavailable", database="unreachable")
        response.status_code = 503
        response.headers["Retry-After"] = "5"
        return response
    return jsonify(status="ok", database="ok")
