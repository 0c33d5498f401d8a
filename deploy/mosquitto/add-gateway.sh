#!/bin/sh
# Give gateway GATEWAY of site SITE a broker account that may publish only under
# remotecal/v1/SITE/GATEWAY/#.
#
#   add-gateway.sh SITE GATEWAY            # asks for the password
#   add-gateway.sh SITE GATEWAY PASSWORD   # e.g. from a secrets manager
#
# Files: $MOSQUITTO_PASSWD (/etc/mosquitto/remotecal.passwd), $MOSQUITTO_ACL
# (/etc/mosquitto/remotecal.acl).  Then reload Mosquitto: systemctl reload mosquitto
# (or kill -HUP its pid); connected clients keep their sessions.
set -eu

usage() { echo "usage: $0 SITE GATEWAY [PASSWORD]" >&2; exit 2; }
[ $# -ge 2 ] && [ $# -le 3 ] || usage
site=$1 gateway=$2
passwd_file=${MOSQUITTO_PASSWD:-/etc/mosquitto/remotecal.passwd}
acl_file=${MOSQUITTO_ACL:-/etc/mosquitto/remotecal.acl}

for part in "$site" "$gateway"; do
    case $part in
        ''|*[!A-Za-z0-9_-]*) echo "$0: '$part': use letters, digits, '-' and '_' only" >&2; exit 2 ;;
    esac
done
user="$site.$gateway"

if grep -qx "user $user" "$acl_file" 2>/dev/null; then
    echo "$0: $user is already in $acl_file" >&2
    exit 1
fi

[ -e "$passwd_file" ] || { : > "$passwd_file"; chmod 0600 "$passwd_file"; }
if [ $# -eq 3 ]; then
    mosquitto_passwd -b "$passwd_file" "$user" "$3"
else
    mosquitto_passwd "$passwd_file" "$user"
fi

printf '\nuser %s\ntopic readwrite remotecal/v1/%s/%s/#\n' "$user" "$site" "$gateway" >> "$acl_file"
echo "added $user: may publish under remotecal/v1/$site/$gateway/#"
