package main

import (
	"fmt"
	"io"
	"math"
	"slices"
	"strings"
	"text/tabwriter"
	"time"
)

// Verdicts of a row.
const (
	pass = "PASS"
	miss = "MISS"
	info = "info"
	fail = "ERROR"
)

// row is one line of the results table.
type row struct {
	bench   string
	metric  string
	direct  string
	proxy   string
	ratio   string
	target  string
	verdict string
}

// report collects the rows and notes of a run.
type report struct {
	rows  []row
	notes []string
}

func (r *report) add(x row) { r.rows = append(r.rows, x) }
func (r *report) note(format string, args ...any) {
	r.notes = append(r.notes, fmt.Sprintf(format, args...))
}

// fail records a benchmark that could not run.
func (r *report) fail(bench string, err error) {
	r.add(row{bench: bench, metric: "-", direct: "-", proxy: "-", ratio: "-", target: "-", verdict: fail})
	r.note("%s: %v", bench, err)
}

// print writes the table as aligned text, or as Markdown.
func (r *report) print(w io.Writer, markdown bool) {
	head := row{"benchmark", "metric", "direct", "proxy", "proxy/direct", "target", "result"}
	if markdown {
		cells := func(x row) string {
			return "| " + strings.Join([]string{x.bench, x.metric, x.direct, x.proxy, x.ratio, x.target, x.verdict}, " | ") + " |"
		}
		fmt.Fprintln(w, cells(head))
		fmt.Fprintln(w, "| --- | --- | ---: | ---: | ---: | --- | --- |")
		for _, x := range r.rows {
			fmt.Fprintln(w, cells(x))
		}
	} else {
		tw := tabwriter.NewWriter(w, 2, 8, 2, ' ', 0)
		for _, x := range append([]row{head}, r.rows...) {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", x.bench, x.metric, x.direct, x.proxy, x.ratio, x.target, x.verdict)
		}
		tw.Flush()
	}
	if len(r.notes) > 0 {
		fmt.Fprintln(w)
		for _, n := range r.notes {
			fmt.Fprintln(w, "- "+n)
		}
	}
}

// percentile returns the p-th percentile (0..100) of ds by the
// nearest-rank method; ds is sorted in place.
func percentile(ds []time.Duration, p float64) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	slices.Sort(ds)
	k := int(math.Ceil(p/100*float64(len(ds)))) - 1
	k = min(max(k, 0), len(ds)-1)
	return ds[k]
}

// median of floats; xs is sorted in place.
func medianFloat(xs []float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	slices.Sort(xs)
	m := len(xs) / 2
	if len(xs)%2 == 1 {
		return xs[m]
	}
	return (xs[m-1] + xs[m]) / 2
}

// ms formats a duration in milliseconds.
func ms(d time.Duration) string {
	return fmt.Sprintf("%.2f ms", float64(d)/float64(time.Millisecond))
}

// ratio formats proxy/direct.
func ratio(proxy, direct float64) string {
	if direct == 0 {
		return "-"
	}
	return fmt.Sprintf("%.2f×", proxy/direct)
}

// verdict is pass or miss.
func verdict(ok bool) string {
	if ok {
		return pass
	}
	return miss
}
