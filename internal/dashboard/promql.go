package dashboard

import (
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strings"

	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/promql/parser"
	"go.yaml.in/yaml/v3"
)

// Expr is one PromQL expression and where it was found.
type Expr struct {
	// Where names the panel and query, the variable, or the rule.
	Where string
	// PromQL is the expression as written, with template variables.
	PromQL string
}

// PanelExprs are the expressions of a dashboard's JSON: every panel
// target's expr (rows' nested panels included) and every query variable's
// label_values selector.
func PanelExprs(dashboardJSON []byte) ([]Expr, error) {
	type target struct {
		RefID string `json:"refId"`
		Expr  string `json:"expr"`
	}
	type panel struct {
		Title   string   `json:"title"`
		Type    string   `json:"type"`
		Targets []target `json:"targets"`
		Panels  []panel  `json:"panels"`
	}
	var d struct {
		Panels     []panel `json:"panels"`
		Templating struct {
			List []struct {
				Name  string `json:"name"`
				Type  string `json:"type"`
				Query any    `json:"query"`
			} `json:"list"`
		} `json:"templating"`
	}
	if err := json.Unmarshal(dashboardJSON, &d); err != nil {
		return nil, fmt.Errorf("dashboard JSON: %w", err)
	}
	var out []Expr
	var walk func([]panel)
	walk = func(ps []panel) {
		for _, p := range ps {
			for _, t := range p.Targets {
				out = append(out, Expr{Where: fmt.Sprintf("panel %q query %s", p.Title, t.RefID), PromQL: t.Expr})
			}
			walk(p.Panels)
		}
	}
	walk(d.Panels)
	for _, v := range d.Templating.List {
		if v.Type != "query" {
			continue
		}
		q, ok := v.Query.(string)
		if !ok {
			return nil, fmt.Errorf("variable %s: query is not a string", v.Name)
		}
		sel, err := labelValuesSelector(q)
		if err != nil {
			return nil, fmt.Errorf("variable %s: %w", v.Name, err)
		}
		out = append(out, Expr{Where: "variable " + v.Name, PromQL: sel})
	}
	return out, nil
}

var labelValues = regexp.MustCompile(`^label_values\((.*),\s*([a-zA-Z_][a-zA-Z0-9_]*)\)$`)

// labelValuesSelector is the series selector of Grafana's
// label_values(selector, label).
func labelValuesSelector(q string) (string, error) {
	m := labelValues.FindStringSubmatch(strings.TrimSpace(q))
	if m == nil {
		return "", fmt.Errorf("%q is not label_values(selector, label)", q)
	}
	return m[1], nil
}

// RuleExprs are the expressions of a Prometheus rule file.
func RuleExprs(rulesYAML []byte) ([]Expr, error) {
	var f struct {
		Groups []struct {
			Name  string `yaml:"name"`
			Rules []struct {
				Alert  string `yaml:"alert"`
				Record string `yaml:"record"`
				Expr   string `yaml:"expr"`
			} `yaml:"rules"`
		} `yaml:"groups"`
	}
	if err := yaml.Unmarshal(rulesYAML, &f); err != nil {
		return nil, fmt.Errorf("rules YAML: %w", err)
	}
	var out []Expr
	for _, g := range f.Groups {
		for _, r := range g.Rules {
			out = append(out, Expr{Where: fmt.Sprintf("group %s rule %s%s", g.Name, r.Alert, r.Record), PromQL: r.Expr})
		}
	}
	return out, nil
}

// variables are the values the template variables are replaced with before
// parsing: the filter variables match anything, the interval variables are
// a plausible range.
var variables = map[string]string{
	"job": ".*", "namespace": ".*", "instance": ".*",
	"__rate_interval": "5m", "__interval": "1m", "__range": "1h",
}

var variable = regexp.MustCompile(`\$\{(\w+)\}|\$(\w+)`)

// Substitute replaces the template variables ($job, ${job},
// $__rate_interval, ...) in promql; an unknown variable is an error (a
// typo would match nothing in Grafana).
func Substitute(promql string) (string, error) {
	var unknown []string
	out := variable.ReplaceAllStringFunc(promql, func(v string) string {
		name := strings.Trim(v, "${}")
		val, ok := variables[name]
		if !ok {
			unknown = append(unknown, v)
			return v
		}
		return val
	})
	if len(unknown) > 0 {
		return "", fmt.Errorf("unknown template variables %v", unknown)
	}
	return out, nil
}

var promqlParser = parser.NewParser(parser.Options{})

// Selector is one series selector of an expression: the metric name and
// the other label matchers.
type Selector struct {
	Name     string
	Matchers []*labels.Matcher
}

// TargetLabels are the labels Prometheus adds to every series of a target
// (from its scrape config and service discovery), which the server itself
// never exports: matchers on them are left out when a selector is compared
// with a scrape.
var TargetLabels = []string{"job", "namespace", "instance"}

// Selectors parses promql (template variables substituted) and returns its
// series selectors. A selector without a fixed metric name is an error: it
// could match anything, so no test could tell whether the server exports it.
func Selectors(promql string) ([]Selector, error) {
	sub, err := Substitute(promql)
	if err != nil {
		return nil, err
	}
	e, err := promqlParser.ParseExpr(sub)
	if err != nil {
		return nil, fmt.Errorf("parse %q: %w", sub, err)
	}
	var out []Selector
	var errs []error
	parser.Inspect(e, func(n parser.Node, _ []parser.Node) error {
		vs, ok := n.(*parser.VectorSelector)
		if !ok {
			return nil
		}
		sel := Selector{Name: vs.Name}
		for _, m := range vs.LabelMatchers {
			if m.Name != model.MetricNameLabel {
				sel.Matchers = append(sel.Matchers, m)
			} else if m.Type == labels.MatchEqual {
				sel.Name = m.Value
			}
		}
		if sel.Name == "" {
			errs = append(errs, fmt.Errorf("selector %s has no metric name", vs))
			return nil
		}
		out = append(out, sel)
		return nil
	})
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return out, nil
}

// MetricNames are the metric names of Selectors(promql), sorted and without
// duplicates.
func MetricNames(promql string) ([]string, error) {
	sels, err := Selectors(promql)
	if err != nil {
		return nil, err
	}
	names := make([]string, 0, len(sels))
	for _, s := range sels {
		names = append(names, s.Name)
	}
	slices.Sort(names)
	return slices.Compact(names), nil
}

// Matches reports whether a series with labels (name -> value) is selected
// by the matchers of s, leaving out those on TargetLabels. An absent label
// has the value "", as in PromQL.
func (s Selector) Matches(series map[string]string) bool {
	for _, m := range s.Matchers {
		if slices.Contains(TargetLabels, m.Name) {
			continue
		}
		if !m.Matches(series[m.Name]) {
			return false
		}
	}
	return true
}

// Family is the metric family a series name belongs to, given the families
// a scrape has (name -> is a histogram or summary): a histogram's _bucket,
// _sum and _count series belong to the histogram. ok is false when the
// scrape has no such family.
func Family(name string, families map[string]bool) (family string, ok bool) {
	if _, ok := families[name]; ok {
		return name, true
	}
	for _, suffix := range []string{"_bucket", "_sum", "_count"} {
		base, found := strings.CutSuffix(name, suffix)
		if found && families[base] {
			return base, true
		}
	}
	return "", false
}
