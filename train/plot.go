package train

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"image/color"
	"os"
	"path/filepath"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"

	"github.com/estkit/estkit/internal/durable"
)

// LossPlot is the name of the loss curve a run writes next to its records.
const LossPlot = "loss.png"

// ReadMetrics reads a run's metrics.jsonl.
func ReadMetrics(run string) ([]StepRecord, error) {
	path := filepath.Join(run, "metrics.jsonl")
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("train: %w", err)
	}
	defer f.Close()
	var recs []StepRecord
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<16), 1<<24)
	for line := 1; sc.Scan(); line++ {
		var r StepRecord
		if err := json.Unmarshal(sc.Bytes(), &r); err != nil {
			return nil, fmt.Errorf("train: %s:%d: %w", path, line, err)
		}
		recs = append(recs, r)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("train: %s: %w", path, err)
	}
	return recs, nil
}

// WriteLossPlot draws a run's training loss (each step, and a moving
// average) and validation loss against steps, with the EST stage
// boundaries marked, into run/loss.png.
func WriteLossPlot(run string) error {
	recs, err := ReadMetrics(run)
	if err != nil {
		return err
	}
	if len(recs) == 0 {
		return fmt.Errorf("train: %s: no steps to plot", run)
	}
	p := plot.New()
	p.Title.Text = filepath.Base(filepath.Clean(run))
	p.X.Label.Text = "step"
	p.Y.Label.Text = "loss"
	p.Legend.Top = true
	var train, avg, val plotter.XYs
	ema := recs[0].Loss
	for _, r := range recs {
		ema = 0.9*ema + 0.1*r.Loss
		train = append(train, plotter.XY{X: float64(r.Step + 1), Y: r.Loss})
		avg = append(avg, plotter.XY{X: float64(r.Step + 1), Y: ema})
		if r.ValLoss > 0 {
			val = append(val, plotter.XY{X: float64(r.Step + 1), Y: r.ValLoss})
		}
	}
	raw, err := plotter.NewLine(train)
	if err != nil {
		return fmt.Errorf("train: plot: %w", err)
	}
	raw.Color = color.RGBA{R: 160, G: 190, B: 230, A: 255}
	smooth, err := plotter.NewLine(avg)
	if err != nil {
		return fmt.Errorf("train: plot: %w", err)
	}
	smooth.Color, smooth.Width = color.RGBA{R: 30, G: 90, B: 180, A: 255}, vg.Points(1.5)
	p.Add(raw, smooth)
	p.Legend.Add("train", raw)
	p.Legend.Add("train (moving average)", smooth)
	if len(val) > 0 {
		l, pts, err := plotter.NewLinePoints(val)
		if err != nil {
			return fmt.Errorf("train: plot: %w", err)
		}
		l.Color, pts.Color = color.RGBA{R: 200, G: 60, B: 30, A: 255}, color.RGBA{R: 200, G: 60, B: 30, A: 255}
		pts.Shape = draw.CircleGlyph{}
		p.Add(l, pts)
		p.Legend.Add("validation", l, pts)
	}
	StageLines(p, recs)
	var buf bytes.Buffer
	w, err := p.WriterTo(8*vg.Inch, 5*vg.Inch, "png")
	if err != nil {
		return fmt.Errorf("train: plot: %w", err)
	}
	if _, err := w.WriteTo(&buf); err != nil {
		return fmt.Errorf("train: plot: %w", err)
	}
	return durable.WriteFile(run, LossPlot, buf.Bytes())
}

// StageLines marks where each EST stage after the first begins (dashed,
// labelled with the stage's rates).
func StageLines(p *plot.Plot, recs []StepRecord) {
	for i := 1; i < len(recs); i++ {
		if recs[i].Stage == recs[i-1].Stage {
			continue
		}
		x := float64(recs[i].Step) + 0.5
		v, err := plotter.NewLine(plotter.XYs{{X: x, Y: p.Y.Min}, {X: x, Y: p.Y.Max}})
		if err != nil {
			continue
		}
		v.Dashes = []vg.Length{vg.Points(4), vg.Points(3)}
		v.Color = color.Gray{Y: 110}
		p.Add(v)
		lb, err := plotter.NewLabels(plotter.XYLabels{XYs: plotter.XYs{{X: x, Y: p.Y.Max}}, Labels: []string{fmt.Sprintf(" stage %d (%s)", recs[i].Stage+1, recs[i].Rates)}})
		if err == nil {
			p.Add(lb)
		}
	}
}
