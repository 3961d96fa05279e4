package xpratest

import (
	"encoding/binary"
	"errors"
	"fmt"
	"image"
	"image/color"
	"image/png"
	"os"
	"time"
)

// ErrBadXWD: the Xvfb frame buffer file is not a ZPixmap XWD image the
// harness understands (24/32 bits per pixel, true colour).
var ErrBadXWD = errors.New("unsupported xwd image")

// Image returns the current content of the Xvfb screen, read from the XWD
// frame buffer file that Xvfb -fbdir keeps up to date.
func (x *Xvfb) Image() (*image.RGBA, error) {
	b, err := os.ReadFile(x.FBFile)
	if err != nil {
		return nil, fmt.Errorf("read frame buffer: %w", err)
	}
	return decodeXWD(b)
}

// Screenshot writes the Xvfb screen as a PNG file.
func (x *Xvfb) Screenshot(path string) error {
	img, err := x.Image()
	if err != nil {
		return err
	}
	f, err := os.Create(path)
	if err != nil {
		return fmt.Errorf("screenshot: %w", err)
	}
	if err := png.Encode(f, img); err != nil {
		_ = f.Close()
		return fmt.Errorf("screenshot: %w", err)
	}
	return f.Close()
}

// decodeXWD decodes an X Window Dump (XWDFileHeader: 25 big-endian CARD32
// fields, then the window name up to header_size, then ncolors 12-byte
// XWDColor entries, then the pixels).
func decodeXWD(b []byte) (*image.RGBA, error) {
	const nfields = 25
	if len(b) < nfields*4 {
		return nil, fmt.Errorf("%w: short header", ErrBadXWD)
	}
	h := make([]uint32, nfields)
	for i := range h {
		h[i] = binary.BigEndian.Uint32(b[i*4:])
	}
	var (
		headerSize   = h[0]
		version      = h[1]
		format       = h[2]
		width        = h[4]
		height       = h[5]
		byteOrder    = h[7]
		bitsPerPixel = h[11]
		bytesPerLine = h[12]
		redMask      = h[14]
		greenMask    = h[15]
		blueMask     = h[16]
		ncolors      = h[19]
	)
	if version != 7 || format != 2 {
		return nil, fmt.Errorf("%w: version %d format %d", ErrBadXWD, version, format)
	}
	if bitsPerPixel != 32 && bitsPerPixel != 24 {
		return nil, fmt.Errorf("%w: %d bits per pixel", ErrBadXWD, bitsPerPixel)
	}
	if width == 0 || height == 0 || width > 1<<15 || height > 1<<15 || bytesPerLine < width*bitsPerPixel/8 {
		return nil, fmt.Errorf("%w: geometry %dx%d, %d bytes per line", ErrBadXWD, width, height, bytesPerLine)
	}
	off := uint64(headerSize) + uint64(ncolors)*12
	need := off + uint64(bytesPerLine)*uint64(height)
	if uint64(len(b)) < need {
		return nil, fmt.Errorf("%w: %d bytes, need %d", ErrBadXWD, len(b), need)
	}
	var order binary.ByteOrder = binary.LittleEndian
	if byteOrder == 1 {
		order = binary.BigEndian
	}
	bpp := bitsPerPixel / 8
	img := image.NewRGBA(image.Rect(0, 0, int(width), int(height)))
	for y := uint32(0); y < height; y++ {
		row := b[off+uint64(y)*uint64(bytesPerLine):]
		for x := uint32(0); x < width; x++ {
			var px uint32
			p := row[x*bpp:]
			if bpp == 4 {
				px = order.Uint32(p)
			} else if byteOrder == 1 {
				px = uint32(p[0])<<16 | uint32(p[1])<<8 | uint32(p[2])
			} else {
				px = uint32(p[2])<<16 | uint32(p[1])<<8 | uint32(p[0])
			}
			img.SetRGBA(int(x), int(y), color.RGBA{
				R: channel(px, redMask), G: channel(px, greenMask), B: channel(px, blueMask), A: 255,
			})
		}
	}
	return img, nil
}

// channel extracts the 8 most significant bits of the mask from px.
func channel(px, mask uint32) uint8 {
	if mask == 0 {
		return 0
	}
	shift := 0
	for mask&1 == 0 {
		mask >>= 1
		shift++
	}
	v := (px >> shift) & mask
	bits := 0
	for m := mask; m != 0; m >>= 1 {
		bits++
	}
	if bits >= 8 {
		return uint8(v >> (bits - 8))
	}
	return uint8(v << (8 - bits))
}

// WaitImage polls the screen until ok returns true for it, up to d; it
// returns the last image read either way, and ErrTimeout when ok never held.
func (x *Xvfb) WaitImage(ok func(*image.RGBA) bool, d time.Duration) (*image.RGBA, error) {
	deadline := time.Now().Add(d)
	for {
		img, err := x.Image()
		if err == nil && ok(img) {
			return img, nil
		}
		if time.Now().After(deadline) {
			if err != nil {
				return img, err
			}
			return img, fmt.Errorf("screen %s: condition not met: %w after %s", x.Display, ErrTimeout, d)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// DistinctColors counts the distinct colours in r sampled every step
// pixels, stopping at limit: a cheap "something was drawn here" test.
func DistinctColors(img *image.RGBA, r image.Rectangle, step, limit int) int {
	if step < 1 {
		step = 1
	}
	r = r.Intersect(img.Bounds())
	seen := map[color.RGBA]bool{}
	for y := r.Min.Y; y < r.Max.Y; y += step {
		for x := r.Min.X; x < r.Max.X; x += step {
			seen[img.RGBAAt(x, y)] = true
			if len(seen) >= limit {
				return len(seen)
			}
		}
	}
	return len(seen)
}
