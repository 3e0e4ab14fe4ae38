"""What every web handler finds on the aiohttp application: the store, the deployment and
the settings. Defined in the core so that channel adapters and the inbox can read them
without importing the web process that sets them (router/app/web.py)."""

from __future__ import annotations

from aiohttp import web

from router.config import Deployment
from router.settings import Settings
from router.store import Store

STORE = web.AppKey("store", Store)
DEPLOYMENT = web.AppKey("deployment", Deployment)
SETTINGS = web.AppKey("settings", Settings)
