#!/usr/bin/env bash
# Give `make run` a SECRET_KEY: unless the environment or .env has one, write a random one
# into .env (git-ignored), where manage.py commands run by hand find it too.
set -euo pipefail
[ -n "${SECRET_KEY:-}" ] && exit 0
grep -qsE '^SECRET_KEY=.+' .env && exit 0
key="$(python3 -c 'import secrets; print(secrets.token_urlsafe(50))')"
if grep -qs '^SECRET_KEY=' .env; then
    sed -i "s|^SECRET_KEY=.*|SECRET_KEY=${key}|" .env
else
    printf '# Written by make run: signs sessions and CSRF tokens; keep it secret.\nSECRET_KEY=%s\n' \
        "$key" >> .env
fi
echo "Wrote a new SECRET_KEY into .env"
