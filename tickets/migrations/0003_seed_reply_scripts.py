"""Seed the support scripts from the field guide's wording.

The text is copied here rather than imported so that this migration keeps
meaning what it meant when it ran. Scripts that already exist (an agent
edited one, or the migration is replayed) are left as they are.
"""

from django.db import migrations

SCRIPTS = [
    (
        "acknowledgement",
        "Initial acknowledgement (P0/P1)",
        "We're seeing an issue that can affect call intake and notifications. "
        "We're actively investigating and will update you by {next_update}. If "
        "you have an urgent call now, please share the caller phone and issue "
        "summary so your on-call can follow up.",
    ),
    (
        "acknowledgement-p2",
        "Initial acknowledgement (P2)",
        "Thanks for letting us know. We've logged this as a non-urgent issue "
        "and are looking into it. We'll update you by {next_update}. If calls "
        "or notifications start to be affected, reply here and we'll treat it "
        "as urgent.",
    ),
    (
        "status-identified",
        "Status update (identified)",
        "We've identified the cause and are working on a fix. Notifications may "
        "be delayed for some calls. Next update by {next_update}. If needed, "
        "{workaround}.",
    ),
    (
        "resolved",
        "Resolved",
        "This incident is resolved. Call intake and notifications are operating "
        "normally. If you notice any remaining issues, reply here and we'll "
        "follow up.",
    ),
    (
        "call-not-seen",
        "When you can't see their call",
        "We don't see that call in our system yet. We're checking upstream logs "
        "now. If you can share the caller number and time, we'll trace it "
        "immediately.",
    ),
]


def seed(apps, schema_editor):
    ReplyScript = apps.get_model("tickets", "ReplyScript")
    for slug, name, body in SCRIPTS:
        ReplyScript.objects.get_or_create(
            slug=slug, defaults={"name": name, "body": body}
        )


class Migration(migrations.Migration):
    dependencies = [("tickets", "0002_sla_clock_alerts_reply_scripts")]

    operations = [migrations.RunPython(seed, migrations.RunPython.noop)]
