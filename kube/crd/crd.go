// Package crd holds the CustomResourceDefinition of isthmus.dev's
// VirtualNetwork: its OpenAPI schema, the CEL rules that refuse a bad
// network before anything acts on it, and the printer columns. The YAML in
// deploy/isthmus/crds/ is generated from it (`go generate ./kube/crd`, part
// of `make gen`); a test fails when that file is stale.
package crd

//go:generate go run ./gencrd -o ../../deploy/isthmus/crds/isthmus.dev_virtualnetworks.yaml

import (
	"fmt"

	"sigs.k8s.io/yaml"

	"github.com/isthmus-net/isthmus/kube/apis/v1alpha1"
)

// Name is the CRD's metadata.name.
const Name = v1alpha1.Resource + "." + v1alpha1.Group

// routeTargetRule accepts "ASN:number" with a 2-byte ASN and a 4-byte number
// (RFC 4360 type 0) or a 4-byte ASN and a 2-byte number (type 2).
const routeTargetRule = `self.matches('^[0-9]{1,10}:[0-9]{1,10}$') && ` +
	`(int(self.split(':')[0]) <= 65535 ? int(self.split(':')[1]) <= 4294967295 : ` +
	`(int(self.split(':')[0]) <= 4294967295 && int(self.split(':')[1]) <= 65535))`

type schema = map[string]any

func str(desc string) schema { return schema{"type": "string", "description": desc} }

func routeTargets(desc string) schema {
	return schema{
		"type":        "array",
		"description": desc,
		"maxItems":    64,
		"items": schema{
			"type":      "string",
			"maxLength": 21,
			"x-kubernetes-validations": []schema{{
				"rule":    routeTargetRule,
				"message": "a route target is ASN:number: a 2-byte ASN (0-65535) with a number up to 4294967295, or a 4-byte ASN with a number up to 65535",
			}},
		},
		"x-kubernetes-list-type": "set",
	}
}

func specSchema() schema {
	return schema{
		"type":        "object",
		"description": "The network the user asks for.",
		"required":    []string{"routeDistinguisher", "subnets"},
		"properties": schema{
			"routeDistinguisher": schema{
				"type":        "object",
				"description": "How each node's route distinguisher for the network is made: node N gets \"<N's InternalIP>:<number>\" (RFC 4364 type 1).",
				"required":    []string{"number"},
				"properties": schema{
					"number": schema{
						"type":        "integer",
						"format":      "int32",
						"minimum":     1,
						"maximum":     65535,
						"description": "The network's part of every RD; unique among networks (a second network with the same number is not accepted).",
					},
				},
			},
			"importRouteTargets": routeTargets("VPNv4 routes carrying any of these route targets are imported into the network's VRFs."),
			"exportRouteTargets": routeTargets("Route targets attached to the routes the network's pods export."),
			"subnets": schema{
				"type":        "array",
				"description": "IPv4 pod prefixes of the network. Each node gets blocks of blockSize carved from them. They must not overlap each other, nor the subnets of a network whose routes this one imports.",
				"minItems":    1,
				"maxItems":    16,
				"items": schema{
					"type":      "string",
					"maxLength": 18,
					"x-kubernetes-validations": []schema{{
						"rule":    "isCIDR(self) && cidr(self).ip().family() == 4 && cidr(self) == cidr(self).masked()",
						"message": "a subnet is an IPv4 prefix with no host bits set, like 10.1.0.0/16",
					}},
				},
				"x-kubernetes-list-type": "set",
				"x-kubernetes-validations": []schema{{
					"rule":    "self.all(a, self.all(b, a == b || (!cidr(a).containsCIDR(b) && !cidr(b).containsCIDR(a))))",
					"message": "subnets overlap",
				}},
			},
			"blockSize": schema{
				"type":        "integer",
				"format":      "int32",
				"minimum":     16,
				"maximum":     30,
				"default":     26,
				"description": "Prefix length of each node's block of pod addresses.",
			},
			"encapsulation": schema{
				"type":        "string",
				"enum":        []string{string(v1alpha1.MPLSOverUDP), string(v1alpha1.MPLSOverMPLS)},
				"default":     string(v1alpha1.MPLSOverUDP),
				"description": "Encapsulation advertised for the network's routes: MPLS over UDP (RFC 7510) or MPLS over MPLS.",
			},
			"externalAccess": schema{
				"type":        "object",
				"description": "Joins the network to a data-center gateway or another Isthmus domain peering with the route reflector.",
				"required":    []string{"routeTargets"},
				"properties": schema{
					"routeTargets": routeTargets("Route targets shared with the gateway, imported and exported on top of the network's own."),
				},
			},
		},
		"x-kubernetes-validations": []schema{{
			"rule":    "self.subnets.all(s, cidr(s).prefixLength() <= (has(self.blockSize) ? self.blockSize : 26))",
			"message": "blockSize must not be shorter than a subnet's prefix length",
		}},
	}
}

func statusSchema() schema {
	condition := schema{
		"type":     "object",
		"required": []string{"type", "status", "lastTransitionTime", "reason", "message"},
		"properties": schema{
			"type":               str("Accepted or Ready."),
			"status":             schema{"type": "string", "enum": []string{"True", "False", "Unknown"}},
			"observedGeneration": schema{"type": "integer", "format": "int64"},
			"lastTransitionTime": schema{"type": "string", "format": "date-time"},
			"reason":             str("Why, in one CamelCase word."),
			"message":            str("Why, in a sentence."),
		},
	}
	return schema{
		"type":        "object",
		"description": "What the leading controller made of the network.",
		"properties": schema{
			"observedGeneration": schema{"type": "integer", "format": "int64", "description": "The spec generation this status describes."},
			"conditions": schema{
				"type":                       "array",
				"description":                "Accepted (no conflict with other networks) and Ready (every node runs the VRF).",
				"items":                      condition,
				"x-kubernetes-list-type":     "map",
				"x-kubernetes-list-map-keys": []string{"type"},
			},
			"blocks": schema{
				"type":        "array",
				"description": "Each node's block of pod addresses, kept across controller restarts.",
				"items": schema{
					"type":     "object",
					"required": []string{"node", "prefix"},
					"properties": schema{
						"node":   str("The Node's name."),
						"prefix": str("The block."),
					},
				},
			},
			"namespaces": schema{"type": "array", "items": schema{"type": "string"}, "description": "Namespaces whose pods join the network."},
			"readyNodes": schema{"type": "integer", "format": "int32", "description": "Nodes that run the network's VRF as intended."},
			"nodes":      schema{"type": "integer", "format": "int32", "description": "Nodes that should."},
		},
	}
}

// Object returns the CRD as a JSON-able object.
func Object() schema {
	column := func(name, typ, path, desc string) schema {
		return schema{"name": name, "type": typ, "jsonPath": path, "description": desc}
	}
	return schema{
		"apiVersion": "apiextensions.k8s.io/v1",
		"kind":       "CustomResourceDefinition",
		"metadata":   schema{"name": Name},
		"spec": schema{
			"group": v1alpha1.Group,
			"scope": "Cluster",
			"names": schema{
				"kind":       v1alpha1.Kind,
				"listKind":   v1alpha1.ListKind,
				"plural":     v1alpha1.Resource,
				"singular":   v1alpha1.Singular,
				"shortNames": []string{v1alpha1.ShortName},
				"categories": []string{"isthmus"},
			},
			"versions": []schema{{
				"name":         v1alpha1.Version,
				"served":       true,
				"storage":      true,
				"subresources": schema{"status": schema{}},
				"additionalPrinterColumns": []schema{
					column("RD", "integer", ".spec.routeDistinguisher.number", "Route distinguisher number"),
					column("Subnets", "string", ".spec.subnets", "Pod prefixes"),
					column("Accepted", "string", `.status.conditions[?(@.type=="Accepted")].status`, "No conflict with other networks"),
					column("Ready", "string", `.status.conditions[?(@.type=="Ready")].status`, "Every node runs the VRF"),
					column("Nodes", "integer", ".status.readyNodes", "Nodes that run the VRF"),
					column("Age", "date", ".metadata.creationTimestamp", ""),
				},
				"schema": schema{"openAPIV3Schema": schema{
					"type":        "object",
					"description": "VirtualNetwork is a tenant network: on every node it is one VRF with a per-node route distinguisher, the network's route targets, and a block of pod addresses carved from its subnets. A Namespace joins it with the label isthmus.dev/network=<name>.",
					"required":    []string{"spec"},
					"properties": schema{
						"apiVersion": str("APIVersion of the object."),
						"kind":       str("Kind of the object."),
						"metadata":   schema{"type": "object"},
						"spec":       specSchema(),
						"status":     statusSchema(),
					},
				}},
			}},
		},
	}
}

// YAML returns the CRD manifest as written to deploy/isthmus/crds/.
func YAML() ([]byte, error) {
	b, err := yaml.Marshal(Object())
	if err != nil {
		return nil, fmt.Errorf("marshal crd: %w", err)
	}
	return append([]byte("# Generated by `go generate ./kube/crd` (make gen); do not edit.\n"), b...), nil
}
