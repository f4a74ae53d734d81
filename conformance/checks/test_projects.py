"""R9: two different projects; R10: the users hold no admin-like role."""

from __future__ import annotations

import pytest


@pytest.mark.requirement("R9")
def test_two_projects(zuul, ci, record):
    zuul_project, ci_project = zuul.project_id, ci.project_id
    distinct = zuul_project != ci_project
    measured = f"zuul={zuul.project_name}, ci={ci.project_name}"  # the ids go into data
    record(
        "R9",
        "projects",
        scope=f"zuul+ci/{zuul.region or 'default'}",
        measured=measured,
        threshold="two different projects",
        ok=distinct,
        reason=""
        if distinct
        else f"--zuul-cloud {zuul.name} and --ci-cloud {ci.name} authenticate into the "
        f"same project {zuul.project_name} ({zuul_project})",
        data={"zuul_project": zuul_project, "ci_project": ci_project},
    )


@pytest.mark.requirement("R10")
def test_non_admin(cloud, profile, record):
    forbidden = {r.lower() for r in profile["non_admin.forbidden_roles"]}
    roles = sorted(cloud.role_names())
    held = [r for r in roles if r.lower() in forbidden]
    threshold = f"none of {', '.join(sorted(forbidden))}"
    reason = ""
    if held:
        reason = (
            f"the {cloud.role} user ({cloud.name}) holds the {', '.join(held)} role(s) in its project: "
            "OpenDev asks for non-admin credentials"
        )
    verdict = "PASS" if not held else ("WARN" if profile["non_admin.on_violation"] == "warn" else "FAIL")
    record(
        "R10",
        "roles",
        scope=cloud.scope,
        measured=", ".join(roles) or "(none)",
        threshold=threshold,
        verdict=verdict,
        reason=reason,
        data={"roles": roles},
    )
