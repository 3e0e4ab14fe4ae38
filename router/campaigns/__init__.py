"""Outbound campaigns as the core knows them: the definition and its recipients (model),
user-written templates in a bounded Jinja2 sandbox (render), send windows, caps and
suppression rules (compliance), campaigns in Redis: create, launch, pause, resume,
cancel, progress (registry). The campaigns worker (workers/campaigns/) sends them; the
voice channel's campaign calls read them too, which is why they live below both."""
