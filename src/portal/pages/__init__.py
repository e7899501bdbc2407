"""The browser pages, rendered on the server: `/` (where sign-ins land), the user's
pages under /app, the admin's under /app/admin, and the Stripe return pages.

`create_app` takes `router()`, `template_config()` and `static_files()` from here."""

from __future__ import annotations

from litestar import Router

from portal.pages import (
    account,
    admin,
    admin_ops,
    billing_pages,
    buy,
    credits,
    jobs,
    lots,
    orgs,
    policies,
    run,
)
from portal.pages import templates as template_pages  # h4
from portal.pages.admin_backends import handlers as backend_pages  # the GPU pool (h8)
from portal.pages.org_auto_topup import handlers as org_auto_topup_pages  # h14
from portal.pages.site import page_router, static_files, template_config


def router() -> Router:
    return page_router(
        [
            *account.handlers,
            *run.handlers,
            *template_pages.handlers,  # h4
            *jobs.handlers,
            *credits.handlers,
            *buy.handlers,
            *admin.handlers,
            *admin_ops.handlers,
            *policies.handlers,  # h6: /app/admin/policies, /app/admin/plans
            *lots.handlers,
            *backend_pages,  # the GPU pool (h8)
            *billing_pages.handlers,  # webhooks and auto top-up (h7)
            *orgs.handlers,  # organisations (h5)
            *org_auto_topup_pages,  # an organisation's auto top-up (h14)
        ]
    )


__all__ = ["router", "static_files", "template_config"]
