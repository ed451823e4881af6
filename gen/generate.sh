#!/usr/bin/env bash
# Regenerates gen/isthmus.go from the YANG modules in yang/. The IETF types
# modules are read from the ygot module's own copies in the module cache.
set -euo pipefail
cd "$(dirname "$0")"
out=${1:-isthmus.go}
ietf=$(go list -m -f '{{.Dir}}' github.com/openconfig/ygot)/demo/getting_started/yang
go tool generator \
  -path="../yang,${ietf}" \
  -output_file="${out}" \
  -package_name=gen \
  -generate_fakeroot -fakeroot_name=device \
  -generate_getters -generate_leaf_getters -generate_delete -generate_append \
  -generate_simple_unions -generate_populate_defaults \
  -include_schema -include_model_data -include_descriptions -typedef_enum_with_defmod \
  -exclude_modules=ietf-interfaces \
  ../yang/isthmus-types.yang ../yang/isthmus-acl.yang ../yang/isthmus-bgp.yang \
  ../yang/isthmus-network-instance.yang ../yang/isthmus-interfaces.yang \
  ../yang/isthmus-tunnel.yang ../yang/isthmus-system.yang ../yang/isthmus-cni.yang \
  ../yang/isthmus-external.yang ../yang/isthmus-aft.yang ../yang/isthmus-acl-flows.yang
# Keep the output independent of where the module cache lives.
ygot=$(go list -m -f '{{.Dir}}' github.com/openconfig/ygot)
sed -i "s#${ygot}#github.com/openconfig/ygot@$(go list -m -f '{{.Version}}' github.com/openconfig/ygot)#g" "${out}"
gofmt -w "${out}"
