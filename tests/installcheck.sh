#!/bin/sh
# `make installcheck` (also run by `make distcheck`): the installed
# conf-available files must load in real lighttpd and Apache with the
# installed programs and snippets (syntax and paths; nothing is started).
#   tests/installcheck.sh SYSCONFDIR PKGLIBEXECDIR
set -eu
sysconfdir=$1
libexecdir=$2
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
for p in mcpauth-metadata mcpauth-gate mcpauth-proxy mcpauth-as; do
    [ -x "$libexecdir/$p" ] || { echo "installcheck: $libexecdir/$p missing" >&2; exit 1; }
done
lighttpd_conf="$sysconfdir/lighttpd/conf-available/50-mcpauth.conf"
apache_conf="$sysconfdir/apache2/conf-available/mcpauth.conf"
# lighttpd: the installed file, with logs and sockets moved to $tmp
sed -e "s|/var/log/lighttpd/mcpauth.log|$tmp/breakage.log|" -e "s|\"/run/lighttpd\"|\"$tmp\"|" \
    "$lighttpd_conf" > "$tmp/50-mcpauth.conf"
cat > "$tmp/lighttpd.conf" <<CONF
server.document-root = "$tmp"
server.port = 1
server.errorlog = "$tmp/error.log"
server.modules = ( "mod_access" )
include "$tmp/50-mcpauth.conf"
CONF
lighttpd -tt -f "$tmp/lighttpd.conf"
echo "installcheck: lighttpd loads $lighttpd_conf"
# Apache: the modules the file needs, then the installed file
mods=/usr/lib/apache2/modules
cat > "$tmp/apache.conf" <<CONF
ServerRoot "$tmp"
Listen 127.0.0.1:1
ServerName 127.0.0.1
ErrorLog "$tmp/error.log"
DefaultRuntimeDir "$tmp"
LoadModule mpm_event_module $mods/mod_mpm_event.so
LoadModule authz_core_module $mods/mod_authz_core.so
LoadModule authz_user_module $mods/mod_authz_user.so
LoadModule authn_core_module $mods/mod_authn_core.so
LoadModule authn_file_module $mods/mod_authn_file.so
LoadModule auth_basic_module $mods/mod_auth_basic.so
LoadModule alias_module $mods/mod_alias.so
LoadModule fcgid_module $mods/mod_fcgid.so
Include "$apache_conf"
CONF
apache2 -t -f "$tmp/apache.conf" 2>&1
echo "installcheck: Apache loads $apache_conf"
