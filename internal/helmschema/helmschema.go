// Package helmschema generates the values schema of the Helm chart
// (deploy/helm/ory-ext-authz/values.schema.json). Its `config` object has
// one property per flag of `ory-ext-authz serve`, typed from the flag table
// (config.Flags), and refuses any other key, so the chart and the flags
// cannot drift: a new flag appears in the schema by regenerating it
// (make helm-schema), and the deploy tests fail while the committed file is
// stale. The rest of the schema describes the chart's own values, every
// object closed to unknown keys except those passed to Kubernetes as they
// are (resources, affinity, security contexts, ...).
package helmschema

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strings"

	"github.com/ory-ext-authz/ory-ext-authz/internal/config"
)

// Path is the schema's file below the repository root.
const Path = "deploy/helm/ory-ext-authz/values.schema.json"

// ManagedFlags are the flags the chart sets from its other values; in
// `config` they are refused by the chart's templates (with the value to use
// instead), so the schema describes them as the others.
var ManagedFlags = []string{
	"routes", "jwks-publish", "tls-cert", "tls-key", "tls-client-ca",
	"redis-url", "redis-timeout", "redis-secret-file", "redis-previous-secret-file",
	"redis-ca-file", "redis-cert-file", "redis-key-file",
}

// addrPattern is a listen address, host:port with an optional host (an
// IPv6 one in brackets), or empty where the flag allows it.
const addrPattern = `^(|(\[[0-9A-Fa-f:.]+\]|[^:\[\]\s]*):[0-9]{1,5})$`

// durationPattern is time.ParseDuration's syntax (the flags' durations).
const durationPattern = `^(0|[+-]?(([0-9]+(\.[0-9]*)?|\.[0-9]+)(ns|us|µs|μs|ms|s|m|h))+)$`

type obj = map[string]any

func object(props obj, required ...string) obj {
	o := obj{"type": "object", "additionalProperties": false, "properties": props}
	if len(required) > 0 {
		o["required"] = required
	}
	return o
}

// described adds desc to o, unless it is empty.
func described(o obj, desc string) obj {
	if desc != "" {
		o["description"] = desc
	}
	return o
}

func str(desc string) obj     { return described(obj{"type": "string"}, desc) }
func boolean(desc string) obj { return described(obj{"type": "boolean"}, desc) }
func integer(desc string, minimum int) obj {
	return described(obj{"type": "integer", "minimum": minimum}, desc)
}
func open(desc string) obj  { return described(obj{"type": "object"}, desc) }
func array(desc string) obj { return described(obj{"type": "array"}, desc) }
func duration(desc string) obj {
	return described(obj{"type": "string", "pattern": durationPattern}, desc)
}

// flagProperty is the schema of one flag in `config`.
func flagProperty(f config.Flag) obj {
	desc := fmt.Sprintf("--%s (%s): %s", f.Name, f.Env, f.Usage)
	if f.Default != "" {
		desc += " Server default: " + f.Default + "."
	}
	var p obj
	switch f.Kind {
	case config.KindInteger:
		p = obj{"type": "integer"}
	case config.KindBoolean:
		p = obj{"type": "boolean"}
	case config.KindDuration:
		p = obj{"type": "string", "pattern": durationPattern}
	default:
		p = obj{"type": "string"}
		if strings.HasSuffix(f.Name, "-addr") {
			// A listen address: its port becomes a container port.
			p["pattern"] = addrPattern
		}
	}
	// null unsets a flag the chart's defaults set (--set config.x=null).
	p["type"] = []any{p["type"], "null"}
	p["description"] = desc
	return p
}

// Schema returns the values schema.
func Schema() obj {
	flags := obj{}
	for _, f := range config.Flags() {
		flags[f.Name] = flagProperty(f)
	}
	return obj{
		"$schema":              "http://json-schema.org/draft-07/schema#",
		"title":                "Values of the ory-ext-authz chart",
		"type":                 "object",
		"additionalProperties": false,
		"properties": obj{
			"global": open("Values a parent chart shares with its subcharts."),
			"image": object(obj{
				"repository": str("Image repository."),
				"tag":        str("Image tag; empty: the chart's appVersion."),
				"pullPolicy": obj{"type": "string", "enum": []string{"Always", "IfNotPresent", "Never"}},
			}, "repository"),
			"imagePullSecrets": array("Pod imagePullSecrets."),
			"nameOverride":     str("Replaces the chart's name in resource names."),
			"fullnameOverride": str("Replaces the release's full name."),
			"replicaCount":     integer("Replicas when autoscaling is off.", 0),
			"config": obj{
				"type":                 "object",
				"additionalProperties": false,
				"description":          "Flags of `ory-ext-authz serve` by name, each set as its ORY_EXT_AUTHZ_* variable. Generated from the flag table (internal/helmschema); unknown flags are refused.",
				"properties":           flags,
			},
			"extraEnv": array("More container env entries."),
			"routes": object(obj{
				"enabled":           boolean("Mount a route table and pass --routes."),
				"existingConfigMap": str("A ConfigMap with the key routes.yaml; empty: the chart's, from table."),
				"table":             open("The route table (docs/routes.md) as YAML."),
			}),
			"jwks": object(obj{
				"enabled":           boolean("Publish the tokenizer's public JWKS (--jwks-publish)."),
				"existingConfigMap": str("A ConfigMap with the key jwks.public.json; empty: the chart's, from publicJWKS."),
				"publicJWKS":        str("The public JWKS as `ory-ext-authz jwks public` prints it."),
			}),
			"tls": object(obj{
				"enabled":    boolean("TLS on the gRPC listener (--tls-cert, --tls-key)."),
				"secretName": str("An existing kubernetes.io/tls Secret; empty: the chart creates one from cert and key."),
				"cert":       str("PEM certificate chain, for the chart's Secret."),
				"key":        str("PEM private key, for the chart's Secret."),
				"clientCA": object(obj{
					"enabled":    boolean("mTLS: require client certificates (--tls-client-ca)."),
					"secretName": str("A Secret holding the CA certificates; empty: the TLS Secret's ca.crt."),
					"key":        str("The key of secretName holding them."),
					"ca":         str("PEM CA certificates, for the chart's Secret."),
				}),
			}),
			"redis": object(obj{
				"enabled": boolean("The tier shared by the replicas (--redis-url)."),
				"url":     obj{"type": "string", "pattern": "^(redis|rediss|valkey|valkeys)://", "description": "--redis-url, without a password."},
				"urlSecret": object(obj{
					"name": str("A Secret holding the whole --redis-url; wins over url."),
					"key":  str("Its key."),
				}),
				"tls": object(obj{
					"secretName": str("A Secret with ca.crt (--redis-ca-file) and, with clientCert, tls.crt and tls.key."),
					"clientCert": boolean("Mount tls.crt and tls.key as --redis-cert-file and --redis-key-file."),
				}),
				"timeout": duration("--redis-timeout; below config.whoami-timeout."),
				"secret": object(obj{
					"existingSecret": str("A Secret with the key secret (and previous-secret)."),
					"value":          str("The secret, for the chart's Secret (at least 32 bytes)."),
					"previous":       boolean("During a rotation: mount previous-secret as --redis-previous-secret-file."),
					"previousValue":  str("The previous secret, for the chart's Secret."),
				}),
				"password": object(obj{
					"existingSecret": str("A Secret holding the Redis password (ORY_EXT_AUTHZ_REDIS_PASSWORD)."),
					"key":            str("Its key."),
				}),
			}),
			"serviceAccount": object(obj{
				"create":      boolean("Create the ServiceAccount."),
				"name":        str("Its name; empty: the full name."),
				"annotations": open("Its annotations."),
			}),
			"podAnnotations": open("Pod annotations."),
			"podLabels":      open("Pod labels."),
			"service": object(obj{
				"type":        obj{"type": "string", "enum": []string{"ClusterIP", "NodePort", "LoadBalancer"}},
				"annotations": open("Service annotations."),
			}),
			"podSecurityContext":            open("The pod's securityContext."),
			"securityContext":               open("The container's securityContext."),
			"resources":                     open("The container's resources."),
			"terminationGracePeriodSeconds": integer("Above shutdown-delay + shutdown-timeout + 1s.", 0),
			"probes": object(obj{
				"readiness": open("Timing fields of the readiness probe."),
				"liveness":  open("Timing fields of the liveness probe."),
			}),
			"autoscaling": object(obj{
				"enabled":                        boolean("A HorizontalPodAutoscaler on CPU."),
				"minReplicas":                    integer("", 1),
				"maxReplicas":                    integer("", 1),
				"targetCPUUtilizationPercentage": integer("", 1),
				"scaleDownStabilizationSeconds":  integer("", 0),
			}),
			"podDisruptionBudget": object(obj{
				"enabled":      boolean("A PodDisruptionBudget."),
				"minAvailable": obj{"type": []string{"integer", "string"}},
			}),
			"topologySpread": object(obj{
				"enabled":           boolean("Spread the pods over topologyKey."),
				"maxSkew":           integer("", 1),
				"topologyKey":       str(""),
				"whenUnsatisfiable": obj{"type": "string", "enum": []string{"ScheduleAnyway", "DoNotSchedule"}},
			}),
			"nodeSelector":      open(""),
			"tolerations":       array(""),
			"affinity":          open(""),
			"priorityClassName": str(""),
			"networkPolicy": object(obj{
				"enabled": boolean("Ingress only to the gRPC, HTTP and forward-auth ports; never the admin API."),
				"from":    array("NetworkPolicyPeers allowed in; empty: any."),
			}),
			"serviceMonitor": object(obj{
				"enabled":       boolean("A ServiceMonitor (Prometheus operator) for /metrics."),
				"interval":      str(""),
				"scrapeTimeout": str(""),
				"labels":        open("Labels the operator's serviceMonitorSelector picks."),
			}),
		},
	}
}

// Generate returns the schema file's bytes: indented JSON, keys sorted,
// with a final newline.
func Generate() ([]byte, error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetIndent("", "  ")
	enc.SetEscapeHTML(false)
	if err := enc.Encode(Schema()); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}
