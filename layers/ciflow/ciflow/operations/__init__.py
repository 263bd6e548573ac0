"""What `python -m ciflow` does, one module per operator command; `cli.py` parses and renders.

- `context`: what every command works with (`Context`: settings, rules, ports, one bucket), the
  operator's errors, and what a bucket's versioning means for ciflow.
- `parallel`: the token bucket that paces submissions and the ordered parallel map.
- `walker`: examines one object as the submit function would and submits it if needed.
- `runs`: `backfill` and `rescan` (listing, checkpoint and resume, or named keys).
- `status`: objects counted by `ci-status`, and the ones PENDING too long.
- `explain`: what an upload of a key would do, side-effect free.
- `check_config`: every settings and rules problem, each naming its variable or field.

Everything goes through the library paths the functions use: `skip_reason`, the bucket allow-list
and a HEAD (the checks `Submitter.process` makes) and then `Submitter.submit_object` for
submissions, `Records` for idempotency, `jobs.build_job` for requests, `actions.status_tags` for
tags. Nothing here prints.
"""
