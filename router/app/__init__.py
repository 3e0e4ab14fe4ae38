"""The application shell: what composes the core, the channels and the workers into
running processes. The web process and its inbox (web, inbox/), the process runner
(processes), the one-process embedded default (embedded) and the operator's CLI (cli).
Nothing below this package imports it."""
