"""Reads what `docker-compose config` rendered (argv[1]) and checks how the
keys reach the services: only the one-shot `keys` service sees a key's value
(argv[2]: the value every key was given in the environment, or "" for none;
argv[3:]: the keys), and every process reads its keys through *_FILE from
the `keys` volume, after `keys` has run. Called by .ci/check-deploy."""
import sys
import yaml

path, given, keys = sys.argv[1], sys.argv[2], sys.argv[3:]
services = yaml.safe_load(open(path))["services"]
readers = {  # each process gets only the keys it uses
    "api": ["JWT_SECRET", "OTP_PEPPER", "LOGIN_TOKEN_KEY", "WEBHOOK_SECRET_KEY"],
    "dispatcher": ["OTP_PEPPER", "OTP_CODE_KEY"],
    "webhook-worker": ["WEBHOOK_SECRET_KEY"],
}


def mounts(service):
    """(source, target, read_only) of each volume: docker-compose v1 renders
    "source:target:mode", docker compose v2 the long form."""
    for volume in service.get("volumes", []):
        if isinstance(volume, str):
            source, target, mode = (volume.split(":") + ["rw"])[:3]
            yield source, target, mode == "ro"
        else:
            yield volume.get("source"), volume.get("target"), bool(volume.get("read_only"))


bad = []
generator = services.get("keys", {})
for key in keys:
    value = (generator.get("environment") or {}).get(key)
    if value != given:
        bad.append(f"keys: {key} is {'set' if value else 'empty'}, expected {'the given value' if given else 'empty'}")
if ("keys", "/var/lib/otp/keys", False) not in set(mounts(generator)):
    bad.append("keys: does not mount the keys volume writable")
for name, service in services.items():
    env = service.get("environment") or {}
    for key in keys:
        if name != "keys" and key in env:
            bad.append(f"{name}: has {key} itself (only `keys` may see a key's value)")
    if name in readers:
        for key in readers[name]:
            if env.get(f"{key}_FILE") != f"/var/lib/otp/keys/{key}":
                bad.append(f"{name}: {key}_FILE is {env.get(key + '_FILE')!r}")
        if ("keys", "/var/lib/otp/keys", True) not in set(mounts(service)):
            bad.append(f"{name}: does not mount the keys volume read-only")
        if (service.get("depends_on") or {}).get("keys", {}).get("condition") != "service_completed_successfully":
            bad.append(f"{name}: does not wait for `keys` to complete")
    if service.get("image") == "otp-service:latest" and not (
        service.get("read_only") and "ALL" in service.get("cap_drop", [])
    ):
        bad.append(f"{name}: not read-only with every capability dropped")
if bad:
    print("\n".join(bad), file=sys.stderr)
    sys.exit(1)
