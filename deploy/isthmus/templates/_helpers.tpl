{{/* Name of a component's objects: <release>-<component>. */}}
{{- define "isthmus.name" -}}
{{- printf "%s-%s" .root.Release.Name .component | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Labels every object carries. */}}
{{- define "isthmus.labels" -}}
app.kubernetes.io/name: isthmus
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
app.kubernetes.io/version: {{ .root.Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .root.Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .root.Chart.Name .root.Chart.Version }}
{{- end -}}

{{/* Labels that select a component's pods. */}}
{{- define "isthmus.selector" -}}
app.kubernetes.io/name: isthmus
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{/* image reference: .image is one entry of .Values.images. */}}
{{- define "isthmus.image" -}}
{{- printf "%s:%s" .image.repository (default .root.Chart.AppVersion .image.tag) -}}
{{- end -}}

{{/* The gNMI section of an isthmusd config; .port is the listen port. */}}
{{- define "isthmus.gnmiConfig" -}}
gnmi:
  address: ":{{ .port }}"
  {{- if .root.Values.gnmi.tls.secretName }}
  tls-cert: /etc/isthmus/tls/tls.crt
  tls-key: /etc/isthmus/tls/tls.key
  {{- if .root.Values.gnmi.tls.clientSecretName }}
  client-ca: /etc/isthmus/tls/ca.crt
  {{- end }}
  {{- end }}
  users:
    - {name: "${ISTHMUS_GNMI_USERNAME}", role: admin, password-hash: "${ISTHMUS_GNMI_PASSWORD_HASH}"}
{{- end -}}

{{/* Environment every isthmusd reads its config variables from. */}}
{{- define "isthmus.daemonEnv" -}}
- name: NODE_NAME
  valueFrom: {fieldRef: {fieldPath: spec.nodeName}}
- name: NODE_IP
  valueFrom: {fieldRef: {fieldPath: status.hostIP}}
- name: ISTHMUS_GNMI_USERNAME
  valueFrom: {secretKeyRef: {name: {{ .Values.gnmi.credentialsSecret }}, key: username}}
- name: ISTHMUS_GNMI_PASSWORD_HASH
  valueFrom: {secretKeyRef: {name: {{ .Values.gnmi.credentialsSecret }}, key: password-hash}}
{{- end -}}

{{/* The BGP protocol of the default instance, as startup-config YAML;
     .routerID and .as; .neighbors is YAML to put under neighbor:. */}}
{{- define "isthmus.bgpStartup" -}}
network-instances:
  network-instance:
    - name: default
      config: {name: default, type: DEFAULT}
      protocols:
        protocol:
          - identifier: BGP
            name: bgp
            config: {identifier: BGP, name: bgp}
            bgp:
              global:
                config: {as: {{ int64 .as }}, router-id: {{ .routerID | quote }}}
                graceful-restart:
                  config: {enabled: true, restart-time: 120, stale-routes-time: 360}
              {{- with .neighbors }}
              neighbors:
                neighbor:
{{ . | indent 18 }}
              {{- end }}
{{- end -}}
