#!/bin/sh
# Prepare deploy/compose for `docker compose up -d`; keeps whatever already exists.
#
#   BROKER_HOST=broker.example.org ./setup.sh
#
# Writes .env (random passwords and the InfluxDB admin token), secrets/ca/ and
# secrets/mosquitto/: a CA and a server certificate for $BROKER_HOST (replace them with your own PKI's if you
# have one), the ACL (from ../mosquitto/remotecal.acl) and the password file with the
# `ingest` account.  Add gateways with ../mosquitto/add-gateway.sh (see ../README.md).
set -eu
cd "$(dirname "$0")"
umask 077

broker_host=${BROKER_HOST:-$(hostname -f 2>/dev/null || hostname)}
secrets=secrets/mosquitto
certs=$secrets/certs
ca=secrets/ca
mkdir -p "$certs" "$ca"

random() { openssl rand -hex 24; }

if [ ! -f .env ]; then
    cat > .env <<EOT
# Written by setup.sh: the secrets of this installation. Keep this file private.
INFLUXDB_ADMIN_PASSWORD=$(random)
INFLUXDB_ADMIN_TOKEN=$(random)
REMOTECAL_GATEWAY_INFLUX_PASSWORD=$(random)
REMOTECAL_GRAFANA_INFLUX_PASSWORD=$(random)
REMOTECAL_PIPELINE_INFLUX_PASSWORD=$(random)
GRAFANA_ADMIN_PASSWORD=$(random)
MQTT_INGEST_PASSWORD=$(random)
EOT
    echo "wrote .env"
fi

if [ ! -f "$certs/server.crt" ]; then
    ec="-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes"
    # shellcheck disable=SC2086
    openssl req -x509 $ec -keyout "$ca/ca.key" -out "$ca/ca.crt" -days 3650 \
        -subj "/CN=remotecal broker CA" 2>/dev/null
    # shellcheck disable=SC2086
    openssl req $ec -keyout "$certs/server.key" -out "$certs/server.csr" \
        -subj "/CN=$broker_host" 2>/dev/null
    printf 'subjectAltName=DNS:%s\n' "$broker_host" > "$certs/san.ext"
    openssl x509 -req -in "$certs/server.csr" -CA "$ca/ca.crt" -CAkey "$ca/ca.key" \
        -CAcreateserial -out "$certs/server.crt" -days 825 -extfile "$certs/san.ext" 2>/dev/null
    rm -f "$certs/server.csr" "$certs/san.ext"
    cp "$ca/ca.crt" "$certs/ca.crt"
    echo "wrote $ca (keep ca.key offline) and $certs for $broker_host; give gateways $certs/ca.crt"
fi

[ -f "$secrets/remotecal.acl" ] || { cp ../mosquitto/remotecal.acl "$secrets/remotecal.acl"; echo "wrote $secrets/remotecal.acl"; }

if [ ! -f "$secrets/remotecal.passwd" ]; then
    ingest_password=$(sed -n 's/^MQTT_INGEST_PASSWORD=//p' .env)
    : > "$secrets/remotecal.passwd"
    if command -v mosquitto_passwd >/dev/null; then
        mosquitto_passwd -b "$secrets/remotecal.passwd" ingest "$ingest_password"
    else
        docker run --rm -v "$PWD/$secrets:/s" eclipse-mosquitto:2.0 \
            mosquitto_passwd -b /s/remotecal.passwd ingest "$ingest_password"
    fi
    echo "wrote $secrets/remotecal.passwd (account: ingest)"
fi

# Mosquitto in the container runs as uid 1883 and must read its secrets.
if [ "$(id -u)" = 0 ]; then
    chown -R 1883:1883 "$secrets"
else
    echo "note: run 'sudo chown -R 1883:1883 $secrets' so the broker container can read it"
fi
